"""Pause and resume: the account status, then the tenant's files between hot and cold.

The client's status in the control database is the desired state: ``paused``
means its files belong in cold storage, ``active`` in hot. Pausing records
``ClientPaused`` first (data-plane keys answer 423 from that commit on), then
drains and releases the tenant and has a worker move its files to cold.
Resuming moves the files back first (the client stays paused meanwhile, so no
request can load a half-moved tenant) and records ``ClientResumed`` last.

A move interrupted by a crash of any process is finished by ``reconcile``,
which runs at start-up and retries failed moves; the worker-side move is
idempotent (see ``workers.tenant_move``), so repeating it is always safe.
Paused data is never deleted here; only an explicit client delete calls
``purge_cold``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from coordinator.accounts import Accounts, ClientView, PauseClient, ResumeClient
from coordinator.errors import TenantUnavailable
from coordinator.router import TenantRouter
from eventlog.events import ClientStatus
from eventlog.stopping import wait_or_stop
from workers.protocol import Op

log = logging.getLogger("vectorpanda.pause")

HOT, COLD = "hot", "cold"
# Copying a large tenant to an HDD takes a while; a move is not a data request.
MOVE_TIMEOUT_S = 600.0
RETRY_S = 5.0


class TenantFiles(Protocol):
    """Where a tenant's files live, and moving them (a worker, or the local disk in tests)."""

    async def release(self, tenant: str) -> None: ...

    async def move(self, tenant: str, to: str) -> dict[str, Any]: ...

    async def describe(self, tenant: str) -> dict[str, Any]: ...

    async def delete_cold(self, tenant: str) -> None: ...

    async def digests(self, tenant: str) -> list[dict[str, str]]: ...


class WorkerTenantFiles:
    """Moves through the worker fleet: RELEASE on the owner, MOVE_TENANT on any live worker."""

    def __init__(self, router: TenantRouter, timeout_s: float = MOVE_TIMEOUT_S) -> None:
        self._router = router
        self._timeout_s = timeout_s

    async def release(self, tenant: str) -> None:
        await self._router.release(tenant)

    async def move(self, tenant: str, to: str) -> dict[str, Any]:
        args: dict[str, Any] = {"to": to}
        keys = await self._router.tenant_keys(tenant)  # to read an encrypted tenant's summary
        if keys is not None:
            args["keys"] = keys
        reply = await self._router.call_any(tenant, Op.MOVE_TENANT, args, self._timeout_s)
        return _result(reply.header)

    async def digests(self, tenant: str) -> list[dict[str, str]]:
        """Every file of the tenant (hot and cold) with the SHA-256 of its bytes."""
        reply = await self._router.call_any(tenant, Op.DIGEST_TENANT, None, self._timeout_s)
        files: list[dict[str, str]] = reply.header.get("files", [])
        return files

    async def describe(self, tenant: str) -> dict[str, Any]:
        reply = await self._router.call_any(tenant, Op.TENANT_SUMMARY)
        return _result(reply.header)

    async def delete_cold(self, tenant: str) -> None:
        await self._router.call_any(tenant, Op.DELETE_COLD_TENANT, None, self._timeout_s)


def _result(header: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k not in ("op", "rid", "ok")}


class PauseService:
    """Pause/resume orchestration; one move at a time per tenant."""

    def __init__(self, accounts: Accounts, files: TenantFiles) -> None:
        self._accounts = accounts
        self._files = files
        self._locks: dict[str, asyncio.Lock] = {}
        self.pending: set[str] = set()  # clients whose files are not yet where status says

    async def pause(
        self, client_id: str, reason: str, actor: str, automatic: bool = False
    ) -> ClientView:
        """Record the pause (423 at once), then move the files to cold."""
        view = await self._accounts.handle(
            PauseClient(client_id=client_id, reason=reason, actor=actor, automatic=automatic)
        )
        await self._place(client_id, COLD)
        return view

    async def resume(self, client_id: str, actor: str, reason: str | None = None) -> ClientView:
        """Move the files back to hot, then record the resume (data served again)."""
        view = await self._accounts.get_client(client_id)
        if view.status != ClientStatus.PAUSED:
            return view
        if not await self._place(client_id, HOT):
            raise TenantUnavailable(
                "The client's data could not be moved back from cold storage yet; retry shortly.",
                retry_after=5,
            )
        return await self._accounts.handle(
            ResumeClient(client_id=client_id, actor=actor, reason=reason)
        )

    async def storage(self, client_id: str) -> dict[str, Any]:
        """Where the client's data is and, when cold, its collections and counts."""
        return await self._files.describe(client_id)

    async def purge_cold(self, client_id: str) -> None:
        """Explicit delete only: remove the cold copy of a deleted client."""
        async with self._lock(client_id):
            # A worker refuses a storage op for a tenant it still owns: let go of it first.
            await self._files.release(client_id)
            await self._files.delete_cold(client_id)
            self.pending.discard(client_id)

    def _lock(self, client_id: str) -> asyncio.Lock:
        return self._locks.setdefault(client_id, asyncio.Lock())

    async def _place(self, client_id: str, to: str) -> bool:
        """Put the files where ``to`` says; False (and retried later) if that failed now."""
        async with self._lock(client_id):
            try:
                await self._files.release(client_id)
                result = await self._files.move(client_id, to)
            except Exception as exc:
                log.warning("moving %s to %s failed (%s); will retry", client_id, to, exc)
                self.pending.add(client_id)
                return False
            self.pending.discard(client_id)
            log.info("client %s data is now %s: %s", client_id, to, result.get("location"))
            return True

    async def reconcile(self, only_pending: bool = False) -> int:
        """Bring every client's files to where its status says; returns how many moved."""
        moved = 0
        for view in await self._accounts.list_clients():
            if only_pending and view.client_id not in self.pending:
                continue
            want = COLD if view.status == ClientStatus.PAUSED else HOT
            if want == HOT and view.client_id not in self.pending:
                # An active tenant is cold only after an interrupted resume; ask before moving.
                try:
                    where = (await self._files.describe(view.client_id)).get("location")
                except Exception:
                    self.pending.add(view.client_id)
                    continue
                if where == HOT:
                    continue
            if await self._place(view.client_id, want):
                moved += 1
        return moved

    async def run(self, stop: asyncio.Event, retry_s: float = RETRY_S) -> None:
        """Reconcile at start-up, then retry failed moves until ``stop``."""
        first = True
        while not stop.is_set():
            try:
                await self.reconcile(only_pending=not first)
                first = False
            except Exception:
                log.exception("pause reconcile failed; retrying")
            await wait_or_stop(stop, retry_s)
