"""Clients' data keys: made with the client, unwrapped for its worker, rotated, destroyed.

Each client has a random 256-bit data key, stored only wrapped (``KeyWrapper``) in the
``client_data_keys`` table, never in an event. The coordinator unwraps a tenant's keys
when it assigns the tenant to a worker and sends them with ASSIGN; nothing else leaves.

Rotation adds version ``n+1`` in state "rotating" (new files are sealed with it), has
the owner re-encrypt every collection under it (RESEAL), and only then marks it
active and the older ones "retired", in the same transaction as
``client.data_key_rotated``. The live files no longer need a retired key, but backups
taken before the rotation do, so it is kept (wrapped) until the client is deleted,
when every version is destroyed. A crash anywhere leaves every version a readable
copy needs, and running the rotation again (it resumes at start-up) finishes it.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Protocol

from coordinator.accounts.data_key_rows import DataKeyRecord
from coordinator.accounts.model import ClientNotFound, ClientStatus
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.key_wrapping import KeyWrapper
from eventlog.events import ClientDataKeyRotated
from workers.crash_points import crash_point

log = logging.getLogger("vectorpanda.data_keys")

DATA_KEY_BYTES = 32


class Resealer(Protocol):
    """The fleet operations a rotation needs (``coordinator.dataplane.DataPlane``)."""

    async def reseal_tenant(self, tenant: str) -> list[str]: ...

    async def release_tenant(self, tenant: str) -> None: ...


def new_record(
    tx: AccountsTransaction,
    wrapper: KeyWrapper,
    client_id: str,
    version: int,
    state: str = "active",
) -> None:
    """Create data key ``version`` for the client, wrapped; the plaintext is not kept."""
    wrapped = wrapper.wrap(os.urandom(DATA_KEY_BYTES))
    tx.data_keys.add(
        DataKeyRecord(
            client_id=client_id,
            key_version=version,
            key_id=f"dk_{secrets.token_hex(8)}",
            wrapped=wrapped.hex(),
            wrapper_key_id=wrapper.key_id,
            created_at=tx.now,
            state=state,
        )
    )


class DataKeys:
    """The coordinator's view of clients' data keys (through the accounts unit of work)."""

    def __init__(self, uow: AccountsUnitOfWork, wrapper: KeyWrapper) -> None:
        self._uow = uow
        self._wrapper = wrapper

    async def ensure(self, client_id: str) -> list[DataKeyRecord]:
        """The client's key rows, creating version 1 if it has none (and is not deleted)."""

        def body(tx: AccountsTransaction) -> list[DataKeyRecord]:
            client = tx.get_client(client_id)
            if client is None or client.status is ClientStatus.DELETED:
                return []
            rows = tx.data_keys.of_client(client_id)
            if not rows:
                new_record(tx, self._wrapper, client_id, 1)
                rows = tx.data_keys.of_client(client_id)
                log.info("client %s: data key %s created", client_id, rows[0].key_id)
            return rows

        return await self._uow.write(body)

    async def keyring_for(self, tenant: str) -> dict[str, Any] | None:
        """ASSIGN's ``keys`` for a tenant: its unwrapped data keys, the newest current.

        None for a tenant that is no client (tools, tests) or a deleted one (its keys are
        gone; a worker can only remove its files).
        """

        def body(tx: AccountsTransaction) -> tuple[bool, list[DataKeyRecord]]:
            client = tx.get_client(tenant)
            live = client is not None and client.status is not ClientStatus.DELETED
            return live, tx.data_keys.of_client(tenant) if live else []

        live, rows = await self._uow.read(body)
        if not live:
            return None
        if not rows:
            rows = await self.ensure(tenant)
            if not rows:
                return None
        keys = {
            str(r.key_version): self._wrapper.unwrap(bytes.fromhex(r.wrapped), r.wrapper_key_id)
            for r in rows
        }
        return {
            "current": max(r.key_version for r in rows),
            "keys": {v: k.hex() for v, k in keys.items()},
        }

    async def begin_rotation(self, client_id: str) -> tuple[int, bool]:
        """Add the next key version (or find the one a rotation already added).

        Returns ``(version, started)``; ClientNotFound for an unknown or deleted client.
        """

        def body(tx: AccountsTransaction) -> tuple[int, bool]:
            client = tx.get_client(client_id)
            if client is None or client.status is ClientStatus.DELETED:
                raise ClientNotFound("no such client")
            rows = tx.data_keys.of_client(client_id)
            if not rows:  # never assigned since encryption came: its first key, then the next
                new_record(tx, self._wrapper, client_id, 1)
                rows = tx.data_keys.of_client(client_id)
            rotating = [r for r in rows if r.state == "rotating"]
            if rotating:  # a rotation is under way: finish that one
                return rotating[-1].key_version, False
            version = rows[-1].key_version + 1
            new_record(tx, self._wrapper, client_id, version, "rotating")
            return version, True

        return await self._uow.write(body)

    async def finish_rotation(
        self, client_id: str, version: int, actor: str, reason: str | None
    ) -> bool:
        """Make ``version`` the active key, retire the older one, record it (one commit)."""

        def body(tx: AccountsTransaction) -> bool:
            rows = tx.data_keys.of_client(client_id)
            newest = [r for r in rows if r.key_version == version and r.state == "rotating"]
            older = [r for r in rows if r.key_version < version and r.state == "active"]
            if not newest:
                return False
            tx.data_keys.set_state(client_id, version, "active")
            for row in older:
                tx.data_keys.set_state(client_id, row.key_version, "retired")
            event = ClientDataKeyRotated(
                client_id=client_id,
                key_id=newest[0].key_id,
                key_version=version,
                previous_key_ids=tuple(r.key_id for r in older),
                reason=reason,
            )
            tx.append([event], actor)
            return True

        return await self._uow.write(body)

    async def pending_rotations(self) -> list[tuple[str, int]]:
        """Rotations not finished: (client, the rotating version)."""

        def body(tx: AccountsTransaction) -> list[tuple[str, int]]:
            rows = tx.data_keys.all()
            return [(r.client_id, r.key_version) for r in rows if r.state == "rotating"]

        return await self._uow.read(body)

    async def rotate(
        self,
        client_id: str,
        version: int,
        fleet: Resealer,
        actor: str,
        reason: str | None,
    ) -> None:
        """Re-encrypt the tenant under ``version``, retire the older key, unload it.

        The unload makes the owner reload the tenant with the keys as they now are.
        """
        crash_point("rotation-start")
        await fleet.reseal_tenant(client_id)
        crash_point("rotation-resealed")
        if await self.finish_rotation(client_id, version, actor, reason):
            log.info("client %s: data key rotated to version %d", client_id, version)
        crash_point("rotation-recorded")
        await fleet.release_tenant(client_id)
