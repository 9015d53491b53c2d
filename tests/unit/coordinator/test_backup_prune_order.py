"""Pruning a backup records `backup.pruned` before it deletes the files.

A crash between the two must leave a backup the log calls pruned (deleted again by the
next prune), never a deletion the log does not know about.
"""

from __future__ import annotations

import io
from typing import Any, cast

import pytest

from coordinator.backups import BackupService
from coordinator.tiers import backup_retention
from eventlog.events import BackupPruned
from workers.backup_store import InMemoryBackupStore


class _Recorder:
    """The accounts port as the service uses it: one `handle` per recorded fact."""

    def __init__(self, store: InMemoryBackupStore) -> None:
        self.store = store
        self.seen: list[tuple[str, bool]] = []

    async def handle(self, command: Any) -> None:
        event = command.event
        assert isinstance(event, BackupPruned)
        present = any(m["backup_id"] == event.backup_id for m in self.store.manifests("c1"))
        self.seen.append((event.backup_id, present))


class _Crash(Exception):
    pass


def _backup(store: InMemoryBackupStore, n: int) -> None:
    writer = store.begin("c1", f"b-{n:03d}")
    writer.add("docs/a.bin", io.BytesIO(b"x"))
    writer.commit({"backup_id": f"b-{n:03d}", "kind": "backup", "started_at": f"2026-01-{n:02d}"})


async def test_the_event_is_recorded_while_the_files_still_exist() -> None:
    store = InMemoryBackupStore()
    keep = backup_retention("free")
    for n in range(1, keep + 3):
        _backup(store, n)
    recorder = _Recorder(store)
    service = BackupService(cast(Any, recorder), cast(Any, None), store)

    pruned = await service.prune("c1", "free", "scheduler")

    assert pruned == ["b-001", "b-002"]
    assert recorder.seen == [("b-001", True), ("b-002", True)]
    assert len(store.manifests("c1")) == keep and store.manifests("c1")[0]["backup_id"] == "b-003"


async def test_a_failed_delete_leaves_the_event_and_the_backup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryBackupStore()
    keep = backup_retention("free")
    for n in range(1, keep + 2):
        _backup(store, n)
    recorder = _Recorder(store)
    service = BackupService(cast(Any, recorder), cast(Any, None), store)

    def crash(client_id: str, backup_id: str) -> None:
        raise _Crash(backup_id)

    monkeypatch.setattr(store, "delete", crash)
    with pytest.raises(_Crash):
        await service.prune("c1", "free", "scheduler")
    assert recorder.seen == [("b-001", True)]  # the log knows before anything is gone
    monkeypatch.undo()
    assert await service.prune("c1", "free", "scheduler") == ["b-001"]  # the next prune ends it
    assert "b-001" not in {m["backup_id"] for m in store.manifests("c1")}
