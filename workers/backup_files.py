"""Backups of a tenant's collections, and restores from them, on the worker that owns it.

A backup copies each collection's files byte for byte (encrypted whenever the live
files are), never re-serialised vectors. Its consistency point is fixed by
``Collection.cut``: under the collection's maintenance and write locks (a few hard
links, no copying) it links the current manifest, spec, segment, index and write-ahead
logs into ``<tenant>/.backup-<id>.tmp/`` and notes each log's length. Every write
acknowledged before the cut is in those bytes; none after it is (the copy stops at the
noted length, a record boundary). The copying into the backup store runs afterwards,
while the collection keeps serving. A paused tenant's cold files do not change, so they
are copied as they are, under the tenant's directory lock.

A restore copies the backup's files into ``<tenant>/.restore-<name>-<hex>.tmp``,
checking each file's SHA-256, for every chosen collection, before anything live is
touched. Each staged copy is then renamed ``.ready`` and swapped in (the live copy
goes to a trash name first). ``finish_restores`` (run whenever a worker takes the
tenant) finishes a swap a crash interrupted, or drops a ready copy whose swap never
began, so a crash leaves either the old collection or the restored one, never neither.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from workers.backup_store import (
    FORMAT,
    BackupDamaged,
    BackupNotFound,
    BackupStore,
    check_backup_id,
)
from workers.collection_spec import (
    CollectionSpec,
    check_collection_name,
    check_tenant_id,
    utc_now_iso,
)
from workers.durable_files import fsync_dir, write_bytes_durably
from workers.errors import StoreError
from workers.integrity import FileChecksum
from workers.protocol import COLLECTION_RE, ErrorCode
from workers.segment import (
    MANIFEST,
    SEGMENT_FILES,
    SPEC_FILE,
    Manifest,
    read_manifest,
    wal_name,
    wal_numbers,
    write_manifest,
)
from workers.tenant_marker import read_marker, tenant_lock

if TYPE_CHECKING:
    from workers.tenant_store import TenantStore

INDEX_FILE = "hnsw.index"  # workers.collection_files.INDEX_FILE (that module loads FAISS)
_READY_RE = re.compile(r"^\.restore-(?P<name>[a-z0-9][a-z0-9_-]{0,62})-[0-9a-f]{32}\.ready$")
_CHUNK = 1 << 20


def _step(name: str) -> None:
    """A point between two durable steps (crash tests replace this to die exactly there)."""
    return None


@dataclass(slots=True)
class CollectionCut:
    """One collection at its consistency point: spec, live count, and the files to copy."""

    name: str
    spec: dict[str, Any]
    vectors: int
    # (path relative to the collection directory, file to read, bytes to take or None: all)
    files: list[tuple[str, Path, int | None]] = field(default_factory=list)


def current_files(directory: Path, manifest: Manifest) -> list[str]:
    """The files that make up a collection now (no orphans, temps or leftovers)."""
    names = [SPEC_FILE, MANIFEST, *(f"{manifest.segment}/{f}" for f in SEGMENT_FILES)]
    names += [wal_name(n) for n in wal_numbers(directory, manifest)]
    if (directory / INDEX_FILE).is_file():
        names.append(INDEX_FILE)
    return names


def link_files(
    directory: Path, names: Iterable[str], lengths: dict[str, int], staging: Path
) -> list[tuple[str, Path, int | None]]:
    """Hard-link ``names`` into ``staging`` (a copy where links are refused); called locked."""
    out: list[tuple[str, Path, int | None]] = []
    for rel in names:
        source, target = directory / rel, staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        length = lengths.get(rel)
        try:
            os.link(source, target)
        except FileNotFoundError:
            if rel.startswith("wal-"):  # an empty log not created yet holds nothing
                continue
            raise
        except OSError:  # another filesystem, or links not allowed: copy the bytes now
            with open(source, "rb") as fin, open(target, "xb") as fout:
                shutil.copyfileobj(fin, fout) if length is None else _copy_n(fin, fout, length)
        out.append((rel, target, length))
    return out


def _copy_n(fin: Any, fout: Any, length: int) -> None:
    left = length
    while left > 0 and (chunk := fin.read(min(_CHUNK, left))):
        fout.write(chunk)
        left -= len(chunk)


def _write_backup(
    backups: BackupStore,
    tenant: str,
    header: dict[str, Any],
    cuts: list[CollectionCut],
    location: str,
) -> dict[str, Any]:
    backup_id = check_backup_id(header.get("backup_id"))
    writer = backups.begin(tenant, backup_id)
    try:
        collections: list[dict[str, Any]] = []
        total_bytes = 0
        for cut in cuts:
            files = []
            for rel, path, length in cut.files:
                with open(path, "rb") as fh:
                    stored = writer.add(f"{cut.name}/{rel}", fh, length)
                files.append(stored.to_json())
                total_bytes += stored.size
                _step("copied_file")
            collections.append(
                {"name": cut.name, "spec": cut.spec, "vectors": cut.vectors, "files": files}
            )
        manifest = {
            "format": FORMAT,
            "backup_id": backup_id,
            "client_id": tenant,
            "kind": header.get("kind") if header.get("kind") == "snapshot" else "backup",
            "started_at": str(header.get("started_at") or utc_now_iso()),
            "completed_at": utc_now_iso(),
            "location": location,
            "head": header.get("head") or {},
            "collections": collections,
            "vectors": sum(cut.vectors for cut in cuts),
            "bytes": total_bytes,
        }
        _step("before_commit")
        writer.commit(manifest)
    except BaseException:
        writer.abort()
        raise
    _step("committed")
    return {k: v for k, v in manifest.items() if k not in ("collections", "head")} | {
        "collections": [c["name"] for c in collections],
        "head_seq": int((header.get("head") or {}).get("seq", 0)),
    }


def _chosen(header: dict[str, Any], present: list[str]) -> list[str]:
    wanted = header.get("collections")
    if wanted is None:
        return present
    if not isinstance(wanted, list):
        raise StoreError(ErrorCode.INVALID, "collections must be a list of names")
    for name in wanted:
        check_collection_name(name)
        if name not in present:
            raise StoreError(ErrorCode.NOT_FOUND, f"collection '{name}' not found")
    return list(dict.fromkeys(wanted))


def backup_owned(
    store: TenantStore, backups: BackupStore, header: dict[str, Any]
) -> dict[str, Any]:
    """Back up an owned (hot) tenant's collections while they keep serving."""
    names = _chosen(header, store.collection_names())
    staging = store.directory / f".backup-{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        cuts = []
        for name in names:
            cuts.append(store.collection(name).cut(staging / name))
            _step("cut")
        return _write_backup(backups, store.tenant, header, cuts, "hot")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def backup_cold(
    hot: Path, cold: Path, tenant: str, backups: BackupStore, header: dict[str, Any]
) -> dict[str, Any]:
    """Back up a paused tenant from its cold copy, which nothing writes to while paused."""

    check_tenant_id(tenant)
    with tenant_lock(hot, tenant):
        marker = read_marker(hot, tenant)
        if marker is None:
            raise StoreError(ErrorCode.UNAVAILABLE, "tenant is not in cold storage")
        root = cold / tenant
        present = sorted(
            e.name
            for e in (root.iterdir() if root.is_dir() else [])
            if COLLECTION_RE.fullmatch(e.name) and (e / MANIFEST).is_file()
        )
        counts = {
            str(c.get("name")): int(c.get("vector_count", 0))
            for c in marker.get("collections", [])
            if isinstance(c, dict)
        }
        cuts = []
        for name in _chosen(header, present):
            directory = root / name
            spec = orjson.loads((directory / SPEC_FILE).read_bytes())
            files: list[tuple[str, Path, int | None]] = [
                (rel, directory / rel, None)
                for rel in current_files(directory, read_manifest(directory))
                if (directory / rel).exists()
            ]
            cuts.append(CollectionCut(name, spec, counts.get(name, 0), files))
        return _write_backup(backups, tenant, header, cuts, "cold")


# ---- restore -------------------------------------------------------------------------


def _targets(manifest: dict[str, Any], header: dict[str, Any]) -> dict[str, str]:
    """Backed-up collection name -> name to restore it as."""
    present = [str(c["name"]) for c in manifest.get("collections", [])]
    names = _chosen(header, present)
    rename = header.get("rename") or {}
    suffix = header.get("suffix") or ""
    if not isinstance(rename, dict) or not isinstance(suffix, str):
        raise StoreError(ErrorCode.INVALID, "rename must be an object and suffix a string")
    out = {}
    for name in names:
        target = str(rename.get(name) or f"{name}{suffix}")
        if not COLLECTION_RE.fullmatch(target):
            raise StoreError(ErrorCode.INVALID, f"'{target[:80]}' is not a valid collection name")
        out[name] = target
    return out


def stage_collection(
    backups: BackupStore,
    tenant: str,
    manifest: dict[str, Any],
    name: str,
    staging: Path,
) -> None:
    """Copy one backed-up collection into ``staging``, checking every file's SHA-256."""
    entry = next(c for c in manifest["collections"] if c["name"] == name)
    staging.mkdir(parents=True)
    for file in entry["files"]:
        rel = str(file["path"]).split("/", 1)[1]
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with (
            backups.open(tenant, manifest["backup_id"], file["path"]) as src,
            open(target, "xb") as out,
        ):
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != file["sha256"] or target.stat().st_size != file["size"]:
            raise BackupDamaged(f"{file['path']}: does not match its SHA-256 in the manifest")
    for directory in {p.parent for p in staging.rglob("*")} | {staging}:
        fsync_dir(directory)


def rename_collection_files(directory: Path, new_name: str) -> None:
    """Make a copied collection carry ``new_name`` (its spec, and the manifest's checksum of it)."""
    spec = CollectionSpec.from_json(orjson.loads((directory / SPEC_FILE).read_bytes()))
    data = orjson.dumps(replace(spec, name=new_name).to_json())
    write_bytes_durably(directory / SPEC_FILE, data)
    manifest = read_manifest(directory)
    if manifest.checksums is not None:
        sums = {**manifest.checksums, SPEC_FILE: FileChecksum.of_bytes(data)}
        write_manifest(directory, replace(manifest, checksums=sums))


def restore_owned(
    store: TenantStore, backups: BackupStore, header: dict[str, Any]
) -> dict[str, Any]:
    """Restore chosen collections of a backup in place, or beside the live ones."""
    tenant = store.tenant
    try:
        manifest = backups.manifest(tenant, check_backup_id(header.get("backup_id")))
    except (BackupNotFound, ValueError):
        raise StoreError(ErrorCode.NOT_FOUND, "backup not found") from None
    targets = _targets(manifest, header)
    live = set(store.collection_names())
    if header.get("replace") is not True:
        taken = sorted(t for t in targets.values() if t in live)
        if taken:
            raise StoreError(ErrorCode.CONFLICT, f"collection '{taken[0]}' already exists")
    ready: list[tuple[str, Path]] = []
    try:
        for name, target in targets.items():
            token = uuid.uuid4().hex
            staging = store.directory / f".restore-{target}-{token}.tmp"
            try:
                stage_collection(backups, tenant, manifest, name, staging)
                if target != name:
                    rename_collection_files(staging, target)
            except BackupDamaged as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise StoreError(ErrorCode.UNAVAILABLE, f"backup is damaged: {exc}") from None
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _step("staged")
            done = staging.with_name(f".restore-{target}-{token}.ready")
            os.rename(staging, done)
            fsync_dir(store.directory)
            ready.append((target, done))
        _step("verified")
    except BaseException:
        for _target, path in ready:
            shutil.rmtree(path, ignore_errors=True)
        raise
    for target, path in ready:
        store.install_restored(target, path)
        _step("installed")
    counts = {c["name"]: int(c.get("vectors", 0)) for c in manifest["collections"]}
    return {
        "restored": list(targets.values()),
        "from": list(targets),
        # Targets that were not live before: collections (re)created by this restore.
        "created": [t for t in targets.values() if t not in live],
        "vectors": sum(counts[n] for n in targets),
    }


def swap_in(directory: Path, name: str, ready: Path, trash_name: str) -> None:
    """Replace ``directory/name`` (if any) with the ready copy; a crash between is finished
    by ``finish_restores``."""
    path = directory / name
    trash = None
    if path.exists():
        trash = path.with_name(trash_name)
        os.rename(path, trash)
        fsync_dir(directory)
        _step("mid_swap")
    os.rename(ready, path)
    fsync_dir(directory)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def finish_restores(directory: Path, remove: Callable[[Path], None] = shutil.rmtree) -> None:
    """Finish or drop the restores a crash interrupted (run before the tenant is served)."""
    if not directory.is_dir():
        return
    changed = False
    for entry in sorted(directory.iterdir()):
        match = _READY_RE.fullmatch(entry.name)
        if match is None or not entry.is_dir():
            continue
        target = directory / match.group("name")
        if (target / MANIFEST).is_file():
            remove(entry)  # the swap never began: the live copy stays
        else:
            if target.exists():
                remove(target)
            os.rename(entry, target)  # the live copy was already set aside: finish
        changed = True
    if changed:
        fsync_dir(directory)
