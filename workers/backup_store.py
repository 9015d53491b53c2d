"""Where backups live: the ``BackupStore`` port and its local-directory adapter.

A backup is a set of files (each collection's directory, byte for byte: encrypted
whenever the live files are) and a manifest: the collections, their specs and
counts, the SHA-256 and size of every file, and the signed event-log head at the
moment it was taken. A backup becomes visible only complete: the local adapter
writes ``<root>/<client>/.<backup_id>.partial/`` (files fsynced, manifest last),
then renames it to ``<root>/<client>/<backup_id>/``. A crash leaves at most a
``.partial`` directory, which is never listed and is swept later. An
S3-compatible store would be one more adapter: upload the files, then the
manifest object last, and list by manifests.

No FAISS here: the coordinator lists, prunes and verifies backups with it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from workers.durable_files import fsync_dir, write_bytes_durably

MANIFEST_FILE = "backup.json"
FORMAT = 1
BACKUP_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# Leftovers of a crashed backup older than this are swept (a running one is younger).
PARTIAL_MAX_AGE_S = 24 * 3600.0
_CHUNK = 1 << 20


class BackupNotFound(LookupError):
    """No complete backup of that id for that client."""


class BackupDamaged(ValueError):
    """A file of a backup is missing or does not match the manifest's SHA-256."""


def new_backup_id(prefix: str, when: str) -> str:
    """A sortable, unique id: ``<prefix>-<yyyymmddThhmmss>-<8 hex>``."""
    stamp = re.sub(r"[^0-9T]", "", when)[:15].lower()
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:8]}"


def check_backup_id(backup_id: object) -> str:
    """The id if it is a safe path component; ValueError otherwise."""
    if not isinstance(backup_id, str) or not BACKUP_ID_RE.fullmatch(backup_id):
        raise ValueError("invalid backup id")
    return backup_id


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a backup: its path (``<collection>/<relative path>``), size and SHA-256."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


class BackupWriter(Protocol):
    """Files of one backup being written; nothing is visible before ``commit``."""

    def add(self, path: str, source: BinaryIO, length: int | None = None) -> StoredFile: ...

    def commit(self, manifest: dict[str, Any]) -> None: ...

    def abort(self) -> None: ...


class BackupStore(Protocol):
    """Per-client backups: write one, list them, read their files, delete one."""

    def begin(self, client_id: str, backup_id: str) -> BackupWriter: ...

    def manifests(self, client_id: str) -> list[dict[str, Any]]: ...

    def manifest(self, client_id: str, backup_id: str) -> dict[str, Any]: ...

    def open(self, client_id: str, backup_id: str, path: str) -> BinaryIO: ...

    def delete(self, client_id: str, backup_id: str) -> None: ...

    def clients(self) -> list[str]: ...


def copy_hashing(source: BinaryIO, target: BinaryIO, length: int | None) -> tuple[int, str]:
    """Copy ``length`` bytes (all if None) and return (bytes copied, SHA-256 hex)."""
    digest = hashlib.sha256()
    copied = 0
    while length is None or copied < length:
        want = _CHUNK if length is None else min(_CHUNK, length - copied)
        chunk = source.read(want)
        if not chunk:
            break
        target.write(chunk)
        digest.update(chunk)
        copied += len(chunk)
    if length is not None and copied != length:
        raise OSError(f"short read: {copied} of {length} bytes")
    return copied, digest.hexdigest()


class _LocalWriter:
    def __init__(self, final: Path) -> None:
        self._final = final
        self._partial = final.with_name(f".{final.name}.partial")
        self._partial.mkdir(parents=True)
        self._dirs: set[Path] = {self._partial}

    def add(self, path: str, source: BinaryIO, length: int | None = None) -> StoredFile:
        target = self._partial / _safe_relative(path)
        if target.parent not in self._dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        with open(target, "xb") as out:
            size, sha = copy_hashing(source, out, length)
            out.flush()
            os.fsync(out.fileno())
        return StoredFile(path, size, sha)

    def commit(self, manifest: dict[str, Any]) -> None:
        for directory in sorted(self._dirs, key=lambda d: len(d.parts), reverse=True):
            fsync_dir(directory)
        data = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        write_bytes_durably(self._partial / MANIFEST_FILE, data)
        os.rename(self._partial, self._final)
        fsync_dir(self._final.parent)

    def abort(self) -> None:
        shutil.rmtree(self._partial, ignore_errors=True)


def _safe_relative(path: str) -> Path:
    rel = Path(path)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
        raise ValueError(f"unsafe path in a backup: {path!r}")
    return rel


class LocalBackupStore:
    """Backups as directories under ``root`` (``VP_BACKUP_DIR``, default ``<data>/backups``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, client_id: str, backup_id: str) -> Path:
        return self.root / client_id / check_backup_id(backup_id)

    def begin(self, client_id: str, backup_id: str) -> BackupWriter:
        final = self._dir(client_id, backup_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise FileExistsError(f"backup {backup_id} exists")
        self.sweep(client_id)
        return _LocalWriter(final)

    def sweep(self, client_id: str) -> None:
        """Remove what crashed backups left behind (never a complete backup)."""
        base = self.root / client_id
        now = time.time()
        for entry in base.glob(".*.partial"):
            try:
                old = now - entry.stat().st_mtime > PARTIAL_MAX_AGE_S
            except FileNotFoundError:
                continue
            if old:
                shutil.rmtree(entry, ignore_errors=True)

    def manifests(self, client_id: str) -> list[dict[str, Any]]:
        """Every complete backup's manifest, oldest first."""
        base = self.root / client_id
        if not base.is_dir():
            return []
        out = []
        for entry in sorted(base.iterdir()):
            if entry.name.startswith(".") or not (entry / MANIFEST_FILE).is_file():
                continue
            try:
                out.append(orjson.loads((entry / MANIFEST_FILE).read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue
        out.sort(key=lambda m: (str(m.get("started_at", "")), str(m.get("backup_id", ""))))
        return out

    def manifest(self, client_id: str, backup_id: str) -> dict[str, Any]:
        try:
            path = self._dir(client_id, backup_id) / MANIFEST_FILE
            doc = orjson.loads(path.read_bytes())
        except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
            raise BackupNotFound(backup_id) from exc
        if not isinstance(doc, dict):
            raise BackupNotFound(backup_id)
        return doc

    def open(self, client_id: str, backup_id: str, path: str) -> BinaryIO:
        return open(self._dir(client_id, backup_id) / _safe_relative(path), "rb")

    def delete(self, client_id: str, backup_id: str) -> None:
        final = self._dir(client_id, backup_id)
        if not final.exists():
            return
        trash = final.with_name(f".trash-{final.name}-{uuid.uuid4().hex}")
        os.rename(final, trash)  # gone from listings in one step
        fsync_dir(final.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def clients(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(e.name for e in self.root.iterdir() if e.is_dir() and e.name[0] != ".")


class _MemoryWriter:
    def __init__(self, store: InMemoryBackupStore, client_id: str, backup_id: str) -> None:
        self._store, self._key = store, (client_id, backup_id)
        self._files: dict[str, bytes] = {}

    def add(self, path: str, source: BinaryIO, length: int | None = None) -> StoredFile:
        _safe_relative(path)
        data = source.read() if length is None else source.read(length)
        if length is not None and len(data) != length:
            raise OSError(f"short read: {len(data)} of {length} bytes")
        self._files[path] = data
        return StoredFile(path, len(data), hashlib.sha256(data).hexdigest())

    def commit(self, manifest: dict[str, Any]) -> None:
        self._store.backups[self._key] = (orjson.loads(orjson.dumps(manifest)), self._files)

    def abort(self) -> None:
        self._files = {}


class InMemoryBackupStore:
    """Backups held in memory (tests); the same contract as ``LocalBackupStore``."""

    def __init__(self) -> None:
        self.backups: dict[tuple[str, str], tuple[dict[str, Any], dict[str, bytes]]] = {}

    def begin(self, client_id: str, backup_id: str) -> BackupWriter:
        if (client_id, check_backup_id(backup_id)) in self.backups:
            raise FileExistsError(f"backup {backup_id} exists")
        return _MemoryWriter(self, client_id, backup_id)

    def manifests(self, client_id: str) -> list[dict[str, Any]]:
        out = [m for (c, _b), (m, _f) in self.backups.items() if c == client_id]
        out.sort(key=lambda m: (str(m.get("started_at", "")), str(m.get("backup_id", ""))))
        return out

    def manifest(self, client_id: str, backup_id: str) -> dict[str, Any]:
        found = self.backups.get((client_id, backup_id))
        if found is None:
            raise BackupNotFound(backup_id)
        return found[0]

    def open(self, client_id: str, backup_id: str, path: str) -> BinaryIO:
        found = self.backups.get((client_id, backup_id))
        if found is None or path not in found[1]:
            raise FileNotFoundError(path)
        return io.BytesIO(found[1][path])

    def delete(self, client_id: str, backup_id: str) -> None:
        self.backups.pop((client_id, backup_id), None)

    def clients(self) -> list[str]:
        return sorted({c for c, _b in self.backups})


def manifest_files(manifest: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(collection name, file entry) of every file a manifest lists."""
    for collection in manifest.get("collections", []):
        for entry in collection.get("files", []):
            yield str(collection["name"]), entry


def verify_backup(store: BackupStore, client_id: str, manifest: dict[str, Any]) -> int:
    """Re-read every file and compare its SHA-256 and size; BackupDamaged on the first miss.

    Returns the bytes checked.
    """
    checked = 0
    backup_id = str(manifest["backup_id"])
    for _name, entry in manifest_files(manifest):
        path = str(entry["path"])
        digest = hashlib.sha256()
        size = 0
        try:
            with store.open(client_id, backup_id, path) as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise BackupDamaged(f"{path}: unreadable ({exc})") from exc
        if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
            raise BackupDamaged(f"{path}: does not match its SHA-256 in the manifest")
        checked += size
    return checked
