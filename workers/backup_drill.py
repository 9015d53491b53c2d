"""The restore drill: restore each client's newest backup into a scratch directory and check it.

Every file is copied out of the backup store with its SHA-256 checked, then each
collection is opened the way a worker opens it (its own CRC32 checks, the write-ahead
log replayed, the index read) and its live count compared with the manifest's. The
scratch directory is removed afterwards; nothing live is read or written.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.backup_files import stage_collection
from workers.backup_store import BackupStore
from workers.sealed import Keyring


@dataclass(slots=True)
class DrillReport:
    """What the drill restored and what failed (one line per failure)."""

    clients: int = 0
    backups: int = 0
    bytes: int = 0
    vectors: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "clients": self.clients,
            "backups": self.backups,
            "bytes": self.bytes,
            "vectors": self.vectors,
            "failures": list(self.failures),
        }


def newest_backup(store: BackupStore, client_id: str) -> dict[str, Any] | None:
    """The client's newest complete daily backup (or snapshot, if it has only those)."""
    manifests = store.manifests(client_id)
    daily = [m for m in manifests if m.get("kind", "backup") == "backup"]
    chosen = daily or manifests
    return chosen[-1] if chosen else None


def restore_check(
    store: BackupStore,
    client_id: str,
    manifest: dict[str, Any],
    scratch: Path,
    keyring: Keyring | None = None,
) -> tuple[int, int]:
    """Restore one backup under ``scratch`` and check it; (bytes, vectors). Raises on a miss.

    An encrypted client's files are read with its data keys (``keyring``).
    """
    from workers.collection_files import read_collection  # FAISS: only when drilling

    total_bytes = total_vectors = 0
    for collection in manifest.get("collections", []):
        name = str(collection["name"])
        target = scratch / client_id / name
        stage_collection(store, client_id, manifest, name, target)
        loaded = read_collection(target, 1 << 30, keyring)
        try:
            count = loaded.table.count
        finally:
            loaded.wal.close()
        if count != int(collection.get("vectors", 0)):
            raise ValueError(
                f"collection {name} restored with {count} vectors, "
                f"the manifest says {collection.get('vectors')}"
            )
        total_vectors += count
        total_bytes += sum(int(f["size"]) for f in collection.get("files", []))
    return total_bytes, total_vectors


def run_drill(
    store: BackupStore,
    scratch_parent: Path | None = None,
    keyrings: Mapping[str, Keyring] | None = None,
) -> DrillReport:
    """Restore the newest backup of every client into a scratch directory; report.

    ``keyrings`` holds the data keys of encrypted clients (the coordinator's drill).
    """
    report = DrillReport()
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".drill-", dir=scratch_parent))
    try:
        for client_id in store.clients():
            manifest = newest_backup(store, client_id)
            if manifest is None:
                continue
            report.clients += 1
            report.backups += 1
            try:
                keyring = (keyrings or {}).get(client_id)
                size, vectors = restore_check(store, client_id, manifest, scratch, keyring)
            except Exception as exc:  # one bad backup must not hide the others
                report.failures.append(f"{client_id}/{manifest.get('backup_id')}: {exc}"[:300])
                continue
            finally:
                shutil.rmtree(scratch / client_id, ignore_errors=True)
            report.bytes += size
            report.vectors += vectors
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report
