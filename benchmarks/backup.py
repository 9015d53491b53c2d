"""Backup and restore throughput (MB/s) of one client's data, on the worker's own code path.

A client with ``n`` vectors (flat collection, folded into a segment, plus a write-ahead
log tail) is backed up into a local backup store (consistent cut + copy + SHA-256) and
restored beside itself (copy + SHA-256 check + swap). Also the restore drill's rate.

    .venv/bin/python -m benchmarks.backup --n 200000 --dim 128
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from workers.backup_drill import run_drill
from workers.backup_files import backup_owned, restore_owned
from workers.backup_store import LocalBackupStore, verify_backup
from workers.collection_spec import parse_collection_spec
from workers.tenant_store import TenantStore

TENANT = "bench_backup"
BATCH = 20_000


def build_client(hot: Path, n: int, dim: int) -> TenantStore:
    store = TenantStore.open(hot, TENANT, 1 << 40)
    spec = {"collection": "docs", "dimension": dim, "metric": "cosine", "index": "flat"}
    store.create_collection(parse_collection_spec(spec))
    collection = store.collection("docs")
    rng = np.random.default_rng(7)
    tail = min(n // 10, 50_000)  # the last writes stay in the log, as in a live client
    folded = False
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        ids = [f"v{start + i}" for i in range(count)]
        meta = [{"n": start + i} for i in range(count)]
        collection.upsert(ids, meta, rng.standard_normal((count, dim), dtype=np.float32))
        if not folded and start + count >= n - tail:
            collection.compact()
            folded = True
    return store


def run_backup_bench(n: int, dim: int, root: Path | None = None) -> dict[str, Any]:
    """Build the client, back it up, verify, restore it, drill it; timings and rates."""
    base = Path(tempfile.mkdtemp(prefix="vp-bench-backup-", dir=root))
    try:
        hot, backups = base / "hot", LocalBackupStore(base / "backups")
        began = time.perf_counter()
        store = build_client(hot, n, dim)
        built = time.perf_counter() - began
        started = time.perf_counter()
        summary = backup_owned(store, backups, {"backup_id": "b-bench", "head": {}})
        backup_s = time.perf_counter() - started
        size = int(summary["bytes"])
        manifest = backups.manifest(TENANT, "b-bench")
        started = time.perf_counter()
        verify_backup(backups, TENANT, manifest)
        verify_s = time.perf_counter() - started
        started = time.perf_counter()
        restore_owned(store, backups, {"backup_id": "b-bench", "suffix": "_r"})
        restore_s = time.perf_counter() - started
        restored = store.collection("docs_r").vector_count
        store.close()
        started = time.perf_counter()
        drill = run_drill(backups, base)
        drill_s = time.perf_counter() - started
        mb = size / 1e6
        return {
            "vectors": n,
            "dim": dim,
            "bytes": size,
            "build_s": round(built, 2),
            "backup_s": round(backup_s, 3),
            "backup_mb_s": round(mb / backup_s, 1),
            "verify_mb_s": round(mb / verify_s, 1),
            "restore_s": round(restore_s, 3),
            "restore_mb_s": round(mb / restore_s, 1),
            "restored_vectors": restored,
            "drill_s": round(drill_s, 3),
            "drill_mb_s": round(mb / drill_s, 1),
            "drill_ok": drill.ok,
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def backup_markdown(result: dict[str, Any] | None) -> str:
    if not result:
        return ""
    return (
        "\n## Backup and restore\n\n"
        f"One client, {result['vectors']:,} vectors x {result['dim']} "
        f"({result['bytes'] / 1e6:.0f} MB of files):\n\n"
        "| step | seconds | MB/s |\n|---|---|---|\n"
        f"| backup (cut, copy, SHA-256) | {result['backup_s']} | {result['backup_mb_s']} |\n"
        f"| restore (copy, SHA-256, swap) | {result['restore_s']} | {result['restore_mb_s']} |\n"
        f"| restore drill (copy, SHA-256, load, count) | {result['drill_s']} | "
        f"{result['drill_mb_s']} |\n"
        f"| verify a backup's checksums | | {result['verify_mb_s']} |\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=128)
    args = p.parse_args()
    result = run_backup_bench(args.n, args.dim)
    print(result)
    print(backup_markdown(result))


if __name__ == "__main__":
    main()
