"""Start-up work of encryption at rest: finish interrupted rotations, encrypt old data.

Once workers are connected, the coordinator
1. resumes every data key rotation a crash or restart interrupted (a client with two
   key versions): re-seal, destroy the old version, record ``client.data_key_rotated``;
2. the first time it runs with a master key (no ``.encryption-upgraded`` marker in the
   data directory), gives every active client a data key and has its owner re-encrypt
   any collection still in plaintext (RESEAL). This is the one-time, in-place upgrade
   of a data directory written before encryption; each step is crash-safe (see
   ``workers.collection.Collection.reseal``), and the marker is written only after
   every client is done, so an interrupted upgrade simply runs again at the next start.

A paused client's cold files are left as they are; they are re-encrypted when the
client is resumed and its collections load (every load re-seals what is not under
the current key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from coordinator.accounts.views import ClientView
from coordinator.data_keys import DataKeys, Resealer
from eventlog.events import ClientStatus
from eventlog.stopping import wait_or_stop
from workers.durable_files import write_bytes_durably

log = logging.getLogger("vectorpanda.encryption")

UPGRADE_MARKER = ".encryption-upgraded"
WAIT_STEP_S = 0.5


class ClientLister(Protocol):
    async def list_clients(self) -> list[ClientView]: ...


class EncryptionDuty:
    """Runs once per coordinator start, in the background."""

    def __init__(
        self,
        data_keys: DataKeys,
        fleet: Resealer,
        clients: ClientLister,
        data_dir: Path,
        workers_live: Callable[[], bool],
    ) -> None:
        self._keys = data_keys
        self._fleet = fleet
        self._clients = clients
        self._marker = data_dir / UPGRADE_MARKER
        self._workers_live = workers_live

    async def run(self, stop: asyncio.Event) -> None:
        # Only clients that existed before this start can hold plaintext: one created
        # since has had its data key from the first write, and must not be unloaded
        # under its own traffic by the upgrade.
        try:
            existing = None if self._marker.exists() else await self._clients.list_clients()
        except Exception:
            log.exception("encryption start-up work stopped; it runs again at the next start")
            return
        while not self._workers_live():
            if await wait_or_stop(stop, WAIT_STEP_S):
                return
        try:
            await self.resume_rotations()
            await self.upgrade_once(existing)
        except Exception:
            log.exception("encryption start-up work stopped; it runs again at the next start")

    async def resume_rotations(self) -> None:
        for client_id, version in await self._keys.pending_rotations():
            log.info("client %s: resuming the data key rotation to version %d", client_id, version)
            await self._keys.rotate(
                client_id, version, self._fleet, "system", "resumed after a restart"
            )

    async def upgrade_once(self, existing: list[ClientView] | None = None) -> None:
        """Encrypt ``existing`` clients' plaintext (default: every client now)."""
        if self._marker.exists():
            return
        if existing is None:
            existing = await self._clients.list_clients()
        clients = [c for c in existing if c.status == ClientStatus.ACTIVE]
        log.info("encrypting existing data at rest: %d active clients to check", len(clients))
        failed = 0
        for client in clients:
            try:
                await self._keys.ensure(client.client_id)
                done = await self._fleet.reseal_tenant(client.client_id)
                await self._fleet.release_tenant(client.client_id)
            except Exception as exc:
                failed += 1
                log.warning("client %s: not encrypted yet (%s)", client.client_id, exc)
                continue
            if done:
                log.info(
                    "client %s: encrypted %d collections in place: %s",
                    client.client_id,
                    len(done),
                    ", ".join(done[:20]),
                )
        if failed:
            log.warning("encryption upgrade: %d clients left for the next start", failed)
            return
        write_bytes_durably(self._marker, b"encryption at rest: existing data upgraded\n")
        log.info("encryption upgrade of existing data finished")
