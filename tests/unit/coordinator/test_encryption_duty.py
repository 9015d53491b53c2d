"""The one-time encryption upgrade touches only clients that existed at start-up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from coordinator.accounts.views import ClientView
from coordinator.encryption_duty import UPGRADE_MARKER, EncryptionDuty


def _client(client_id: str, status: str = "active") -> ClientView:
    return ClientView(client_id, client_id, f"{client_id}@example.com", "free", status, "")


class _Clients:
    def __init__(self, *clients: ClientView) -> None:
        self.clients = list(clients)

    async def list_clients(self) -> list[ClientView]:
        return list(self.clients)


class _Keys:
    def __init__(self) -> None:
        self.ensured: list[str] = []

    async def ensure(self, client_id: str) -> None:
        self.ensured.append(client_id)

    async def pending_rotations(self) -> list[tuple[str, int]]:
        return []


class _Fleet:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def reseal_tenant(self, tenant: str) -> list[str]:
        self.calls.append(("reseal", tenant))
        return []

    async def release_tenant(self, tenant: str) -> None:
        self.calls.append(("release", tenant))


async def test_a_client_created_after_start_is_left_to_its_own_traffic(tmp_path: Path) -> None:
    clients, keys, fleet = _Clients(_client("old"), _client("gone", "deleted")), _Keys(), _Fleet()
    live = asyncio.Event()
    duty: Any = EncryptionDuty(keys, fleet, clients, tmp_path, live.is_set)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(duty.run(stop))
    await asyncio.sleep(0.05)  # the duty has listed the clients and waits for workers
    clients.clients.append(_client("new"))  # created while the workers connect
    live.set()
    await asyncio.wait_for(task, 5)
    assert fleet.calls == [("reseal", "old"), ("release", "old")]
    assert keys.ensured == ["old"]
    assert (tmp_path / UPGRADE_MARKER).exists()


async def test_with_the_marker_written_nothing_is_touched(tmp_path: Path) -> None:
    (tmp_path / UPGRADE_MARKER).write_bytes(b"done\n")
    clients, keys, fleet = _Clients(_client("old")), _Keys(), _Fleet()
    duty: Any = EncryptionDuty(keys, fleet, clients, tmp_path, lambda: True)  # type: ignore[arg-type]
    await asyncio.wait_for(duty.run(asyncio.Event()), 5)
    assert fleet.calls == [] and keys.ensured == []
