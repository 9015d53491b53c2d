"""Which tenants this worker owns, at which epoch, and the gate that orders ownership changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class TenantGate:
    """Data operations pass together; an ownership change waits for them and holds the rest back."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._active = 0
        self._changing = False
        self._changes_waiting = 0

    @property
    def open_for_data(self) -> bool:
        """No ownership change holds or waits for the gate (a data operation would pass)."""
        return not self._changing and not self._changes_waiting

    @asynccontextmanager
    async def data(self) -> AsyncIterator[None]:
        """Hold the gate for one data operation."""
        async with self._cond:
            await self._cond.wait_for(lambda: not self._changing and not self._changes_waiting)
            self._active += 1
        try:
            yield
        finally:
            async with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        """Hold the gate alone, for assign, release or deleting the tenant."""
        async with self._cond:
            self._changes_waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._changing and not self._active)
            finally:
                self._changes_waiting -= 1
            self._changing = True
        try:
            yield
        finally:
            async with self._cond:
                self._changing = False
                self._cond.notify_all()


class Ownership:
    """Tenant -> assigned epoch, plus one gate per tenant ever assigned here."""

    def __init__(self) -> None:
        self.epochs: dict[str, int] = {}
        self._gates: dict[str, TenantGate] = {}

    def gate(self, tenant: str) -> TenantGate:
        """The tenant's gate (created on first use; call only with a checked tenant id)."""
        gate = self._gates.get(tenant)
        if gate is None:
            gate = self._gates[tenant] = TenantGate()
        return gate

    def owns(self, tenant: object, epoch: object) -> bool:
        """Whether this worker owns ``tenant`` at exactly ``epoch``."""
        if not isinstance(tenant, str) or not isinstance(epoch, int) or isinstance(epoch, bool):
            return False
        return self.epochs.get(tenant) == epoch
