"""One contract for both backup stores: a backup is listed only once complete and intact.

Also the worker-side backup and restore against the in-memory store: a restore that
finds a file not matching its SHA-256 changes nothing live.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from workers.backup_files import backup_owned, restore_owned
from workers.backup_store import (
    BackupDamaged,
    BackupNotFound,
    BackupStore,
    InMemoryBackupStore,
    LocalBackupStore,
    check_backup_id,
    verify_backup,
)
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.tenant_store import TenantStore


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackupStore]:
    yield (
        LocalBackupStore(tmp_path / "backups")
        if request.param == "local"
        else (InMemoryBackupStore())
    )


def _manifest(backup_id: str, files: list[dict[str, object]], at: str) -> dict[str, object]:
    return {
        "backup_id": backup_id,
        "kind": "backup",
        "started_at": at,
        "collections": [{"name": "docs", "vectors": 1, "files": files}],
    }


def _write(store: BackupStore, backup_id: str, at: str, payload: bytes) -> dict[str, object]:
    writer = store.begin("c1", backup_id)
    stored = writer.add("docs/a.bin", io.BytesIO(payload + b"tail"), len(payload))
    manifest = _manifest(backup_id, [stored.to_json()], at)
    writer.commit(manifest)
    return manifest


def test_a_backup_is_listed_only_once_committed(store: BackupStore) -> None:
    writer = store.begin("c1", "b-1")
    writer.add("docs/a.bin", io.BytesIO(b"abc"))
    assert store.manifests("c1") == []
    writer.abort()
    assert store.manifests("c1") == []
    _write(store, "b-3", "2027-01-03", b"three")
    _write(store, "b-2", "2027-01-02", b"two")
    assert [m["backup_id"] for m in store.manifests("c1")] == ["b-2", "b-3"]
    assert store.clients() == ["c1"]
    with store.open("c1", "b-2", "docs/a.bin") as fh:
        assert fh.read() == b"two"  # only the given length was taken
    with pytest.raises(BackupNotFound):
        store.manifest("c1", "b-9")
    with pytest.raises(FileExistsError):
        store.begin("c1", "b-2")
    store.delete("c1", "b-2")
    assert [m["backup_id"] for m in store.manifests("c1")] == ["b-3"]
    assert store.manifests("other") == []


def test_verify_finds_a_changed_byte(store: BackupStore, tmp_path: Path) -> None:
    manifest = _write(store, "b-1", "2027-01-01", b"payload")
    assert verify_backup(store, "c1", manifest) == len(b"payload")
    if isinstance(store, LocalBackupStore):
        (tmp_path / "backups" / "c1" / "b-1" / "docs" / "a.bin").write_bytes(b"paYload")
    else:
        assert isinstance(store, InMemoryBackupStore)
        store.backups[("c1", "b-1")][1]["docs/a.bin"] = b"paYload"
    with pytest.raises(BackupDamaged):
        verify_backup(store, "c1", manifest)


def test_unsafe_ids_and_paths_are_refused(store: BackupStore) -> None:
    for bad in ("../x", "", "B-1", "a/b", "x" * 65):
        with pytest.raises(ValueError):
            check_backup_id(bad)
    writer = store.begin("c1", "b-1")
    for path in ("../escape", "/abs", "docs/../../x"):
        with pytest.raises(ValueError):
            writer.add(path, io.BytesIO(b"x"))
    writer.abort()


def test_a_damaged_backup_restores_nothing(tmp_path: Path) -> None:
    backups = InMemoryBackupStore()
    tenant = TenantStore.open(tmp_path / "hot", "t1", 1 << 30)
    spec = {"collection": "docs", "dimension": 4, "metric": "l2", "index": "flat"}
    tenant.create_collection(parse_collection_spec(spec))
    data = np.arange(40, dtype=np.float32).reshape(10, 4)
    tenant.collection("docs").upsert([str(i) for i in range(10)], [None] * 10, data)
    backup_owned(tenant, backups, {"backup_id": "b-1", "head": {"seq": 1, "hash": "h"}})
    tenant.collection("docs").delete(["0", "1"])
    files = backups.backups[("t1", "b-1")][1]
    victim = next(p for p in files if p.endswith("vectors.npy"))
    files[victim] = files[victim][:-1] + b"\x01"
    with pytest.raises(StoreError, match="damaged"):
        restore_owned(tenant, backups, {"backup_id": "b-1", "replace": True})
    assert tenant.collection("docs").vector_count == 8, "live data changed"
    assert not [p for p in tenant.directory.iterdir() if p.name.startswith(".restore-")]
    tenant.close()
