"""Moving a tenant's files between the hot (SSD) and cold (HDD) directories, crash-safely.

Which copy is in use is decided by one small marker file per tenant,
``<hot>/.locations/<tenant>``: present (JSON, ``"location": "cold"``) means the
cold copy ``<cold>/<tenant>`` is the tenant's data; absent means the hot copy
``<hot>/<tenant>`` is. The marker is written with write-temp + fsync + rename and
removed with unlink + directory fsync, so switching is one atomic step.

A move to the other side runs these steps, each durable before the next:

1. ``copy``: every file into ``<dest>/.<tenant>.partial/`` (fsync each file and dir);
2. ``verify``: size + CRC32 of every copied file equal those of the source;
3. ``rename``: ``.partial`` becomes ``<dest>/<tenant>`` (fsync the parent);
4. ``switch``: write (to cold) or remove (to hot) the marker;
5. ``remove``: the old copy is renamed to a trash name, then deleted.

Before step 4 the old copy is in use and complete; from step 4 on the new one is,
and it was verified before the switch. So a crash anywhere leaves exactly one
complete copy in use, never zero. ``settle`` (run first by every move) clears
what a crash left behind on the side not in use, so running the move again
after a crash finishes it or, if the caller now wants the other side, rolls it
back: the operation is idempotent. Nothing here is ever deleted while in use.

The marker also carries a summary (collections, vector count, bytes) taken
when the tenant went cold, so admin views can show a paused tenant's data
without loading it into a worker.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import orjson

from workers.collection_spec import check_tenant_id
from workers.durable_files import fsync_dir, remove_tree_durably, write_bytes_durably
from workers.errors import StoreError
from workers.file_digests import tree_digests
from workers.integrity import FileChecksum, file_checksum
from workers.protocol import ErrorCode
from workers.sealed import Keyring
from workers.tenant_marker import (
    COLD,
    HOT,
    LOCATIONS_DIR,
    LOCK_FILE,
    marker_path,
    read_marker,
)
from workers.tenant_marker import tenant_lock as _tenant_lock

_CHUNK = 1 << 20


def _step(name: str) -> None:
    """A point between two durable steps (tests replace this to crash exactly there)."""
    return None


def location(hot: Path, tenant: str) -> str:
    """Which copy of the tenant is in use: ``hot`` or ``cold``."""
    return COLD if read_marker(hot, tenant) is not None else HOT


def in_use_dir(hot: Path, cold: Path, tenant: str) -> Path:
    return (cold if location(hot, tenant) == COLD else hot) / tenant


def _skipped(name: str) -> bool:
    # The lock file and leftovers of interrupted writes are not the tenant's data.
    return name == LOCK_FILE or name.startswith(".trash-") or name.endswith(".tmp")


def tree_checksums(root: Path) -> dict[str, FileChecksum]:
    """Size and CRC32 of every data file under ``root``, by relative path."""
    sums: dict[str, FileChecksum] = {}
    if not root.is_dir():
        return sums
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        for name in sorted(files):
            if _skipped(name):
                continue
            path = Path(directory) / name
            sums[str(path.relative_to(root))] = file_checksum(path)
    return sums


def _copy_file(src: Path, dst: Path) -> None:
    with src.open("rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def _copy_tree(src: Path, dst: Path) -> None:
    dst.mkdir()
    if src.is_dir():
        for directory, dirs, files in os.walk(src):
            dirs[:] = sorted(d for d in dirs if not _skipped(d))
            rel = Path(directory).relative_to(src)
            target = dst / rel
            target.mkdir(exist_ok=True)
            for name in sorted(files):
                if not _skipped(name):
                    _copy_file(Path(directory) / name, target / name)
                    _step("copied_file")
            fsync_dir(target)
    fsync_dir(dst)
    fsync_dir(dst.parent)


def _partial(root: Path, tenant: str) -> Path:
    return root / f".{tenant}.partial"


def _remove(path: Path, tenant: str) -> None:
    remove_tree_durably(path, f".trash-{tenant}-{uuid.uuid4().hex}")


def settle(hot: Path, cold: Path, tenant: str) -> None:
    """Clear what an interrupted move left on the side not in use (never the copy in use)."""
    check_tenant_id(tenant)
    where = location(hot, tenant)
    for root in (hot, cold):
        partial = _partial(root, tenant)
        if partial.exists():
            shutil.rmtree(partial)
            fsync_dir(root)
        for trash in root.glob(f".trash-{tenant}-*"):
            if trash.is_dir() and len(trash.name) == len(f".trash-{tenant}-") + 32:
                shutil.rmtree(trash, ignore_errors=True)
    stale = (hot if where == COLD else cold) / tenant
    if stale.exists():
        _remove(stale, tenant)


def summarize_hot(
    hot: Path, tenant: str, compact_bytes: int, keyring: Keyring | None = None
) -> dict[str, Any]:
    """Collections, vector count and bytes of a hot tenant (opens it briefly, then closes).

    An encrypted tenant's files are read with ``keyring``, the keys the coordinator sent
    with the move; they are dropped with the store when it closes.
    """
    if not (hot / tenant).is_dir():
        return {"collections": [], "vectors": 0, "bytes": 0}
    from workers.tenant_store import TenantStore  # FAISS and friends: only when needed

    store = TenantStore.open(hot, tenant, compact_bytes, keyring=keyring)
    try:
        infos = store.list_collections()
        figures = store.usage()
    finally:
        store.close()
    return {"collections": infos, "vectors": figures["vectors"], "bytes": figures["bytes"]}


def move_tenant(
    hot: Path,
    cold: Path,
    tenant: str,
    to: str,
    compact_bytes: int = 64 << 20,
    keyring: Keyring | None = None,
) -> dict[str, Any]:
    """Make ``to`` (``hot`` or ``cold``) the tenant's copy in use; safe to repeat after a crash.

    The files are copied byte for byte: an encrypted tenant's cold copy is encrypted too.
    """
    check_tenant_id(tenant)
    if to not in (HOT, COLD):
        raise StoreError(ErrorCode.INVALID, "to must be 'hot' or 'cold'")
    (hot / LOCATIONS_DIR).mkdir(parents=True, exist_ok=True)
    cold.mkdir(parents=True, exist_ok=True)
    summary = None
    if to == COLD and location(hot, tenant) == HOT:
        # Taken first: opening the store replays its WAL and closing it saves indexes,
        # so every file is final before the copy starts.
        summary = summarize_hot(hot, tenant, compact_bytes, keyring)
    with _tenant_lock(hot, tenant):
        settle(hot, cold, tenant)
        if location(hot, tenant) == to:
            return describe(hot, cold, tenant)
        src_root, dst_root = (hot, cold) if to == COLD else (cold, hot)
        src, partial = src_root / tenant, _partial(dst_root, tenant)
        _copy_tree(src, partial)
        _step("copied")
        want, got = tree_checksums(src), tree_checksums(partial)
        if want != got:
            shutil.rmtree(partial)
            raise StoreError(ErrorCode.INTERNAL, f"copy of {tenant} does not match its source")
        _step("verified")
        os.rename(partial, dst_root / tenant)
        fsync_dir(dst_root)
        _step("renamed")
        marker = marker_path(hot, tenant)
        if to == COLD:
            doc = {"location": COLD, **(summary or {})}
            write_bytes_durably(marker, orjson.dumps(doc))
        else:
            marker.unlink()
            fsync_dir(marker.parent)
        _step("switched")
        if src.exists():
            _remove(src, tenant)
        _step("removed")
    return describe(hot, cold, tenant)


def describe(hot: Path, cold: Path, tenant: str) -> dict[str, Any]:
    """Where the tenant is and, for a cold tenant, what the marker recorded of its data."""
    marker = read_marker(hot, tenant)
    if marker is None:
        return {"tenant": tenant, "location": HOT}
    out = {"tenant": tenant, **marker}
    out.setdefault("collections", [])
    return out


def delete_cold(hot: Path, cold: Path, tenant: str) -> None:
    """Explicit delete of a cold tenant: its cold copy, leftovers and marker go."""
    check_tenant_id(tenant)
    for root in (hot, cold):
        partial = _partial(root, tenant)
        if partial.exists():
            shutil.rmtree(partial)
    if (cold / tenant).exists():
        _remove(cold / tenant, tenant)
    marker = marker_path(hot, tenant)
    if marker.exists():
        marker.unlink()
        fsync_dir(marker.parent)


class TenantMover:
    """The worker's handle on hot/cold moves, bound to its directories."""

    def __init__(self, hot: Path, cold: Path | None, compact_bytes: int) -> None:
        self.hot = hot
        self.cold = cold if cold is not None else hot.parent / "cold"
        self.compact_bytes = compact_bytes

    def is_cold(self, tenant: str) -> bool:
        return location(self.hot, tenant) == COLD

    def move(self, tenant: str, to: object, keyring: Keyring | None = None) -> dict[str, Any]:
        if not isinstance(to, str):
            raise StoreError(ErrorCode.INVALID, "to must be 'hot' or 'cold'")
        return move_tenant(self.hot, self.cold, tenant, to, self.compact_bytes, keyring)

    def digests(self, tenant: str) -> list[dict[str, str]]:
        """Every file of the tenant, hot and cold, with its SHA-256 (for deletion receipts)."""
        check_tenant_id(tenant)
        hot = tree_digests(self.hot / tenant, f"{self.hot.name}/{tenant}")
        return hot + tree_digests(self.cold / tenant, f"{self.cold.name}/{tenant}")

    def describe(self, tenant: str) -> dict[str, Any]:
        return describe(self.hot, self.cold, check_tenant_id(tenant))

    def delete_cold(self, tenant: str) -> None:
        delete_cold(self.hot, self.cold, tenant)
