"""One tenant's collections on disk, held under an exclusive lock while this worker owns it."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from workers.collection import Collection
from workers.collection_spec import CollectionSpec, check_collection_name, check_tenant_id
from workers.durable_files import fsync_dir, is_trash_name, remove_tree_durably, trash_name_for
from workers.errors import StoreError, collection_not_found
from workers.protocol import COLLECTION_RE, ErrorCode
from workers.segment import MANIFEST

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class TenantStore:
    """Create, load, list and delete a tenant's collections; everything under ``hot/<tenant>``."""

    def __init__(self, hot_dir: Path, tenant: str, compact_bytes: int) -> None:
        self.tenant = check_tenant_id(tenant)
        self.directory = hot_dir / self.tenant
        self._compact_bytes = compact_bytes
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._lock_fd = -1
        self._closed: StoreError | None = None

    @classmethod
    def open(cls, hot_dir: Path, tenant: str, compact_bytes: int) -> TenantStore:
        """Take the tenant's directory lock (UNAVAILABLE if another process holds it)."""
        store = cls(hot_dir, tenant, compact_bytes)
        store._take_ownership()
        store._remove_leftovers()
        return store

    def create_collection(self, spec: CollectionSpec) -> dict[str, Any]:
        """Create an empty collection; CONFLICT if the name is taken."""
        with self._lock:
            self._check_open()
            if spec.name in self._collections or (self.directory / spec.name).exists():
                raise StoreError(ErrorCode.CONFLICT, f"collection '{spec.name}' already exists")
            collection = Collection.create(self.directory, spec, self._compact_bytes)
            self._collections[spec.name] = collection
        return collection.info()

    def collection(self, name: str) -> Collection:
        """The loaded collection ``name``; NOT_FOUND if it does not exist."""
        check_collection_name(name)
        with self._lock:
            self._check_open()
            loaded = self._collections.get(name)
            if loaded is not None:
                return loaded
            path = self.directory / name
            if not (path / MANIFEST).is_file():
                raise collection_not_found(name)
            try:
                loaded = Collection.load(path, self._compact_bytes)
            except Exception as exc:
                log.exception("tenant %s: collection %s failed to load", self.tenant, name)
                raise StoreError(
                    ErrorCode.UNAVAILABLE, f"collection '{name}' cannot be loaded right now"
                ) from exc
            self._collections[name] = loaded
            return loaded

    def collection_names(self) -> list[str]:
        """Names of all collections on disk, sorted."""
        with self._lock:
            self._check_open()
            return sorted(
                entry.name
                for entry in self.directory.iterdir()
                if COLLECTION_RE.fullmatch(entry.name) and (entry / MANIFEST).is_file()
            )

    def list_collections(self) -> list[dict[str, Any]]:
        """INFO of every collection, sorted by name."""
        return [self.collection(name).info() for name in self.collection_names()]

    def delete_collection(self, name: str) -> None:
        """Remove a collection's files durably; NOT_FOUND if it does not exist."""
        check_collection_name(name)
        with self._lock:
            self._check_open()
            path = self.directory / name
            loaded = self._collections.pop(name, None)
            if loaded is None and not (path / MANIFEST).is_file():
                raise collection_not_found(name)
            if loaded is not None:
                loaded.close(collection_not_found(name))
            remove_tree_durably(path, trash_name_for(name))

    def usage(self) -> dict[str, int]:
        """Collections, live vectors and bytes on disk for this tenant."""
        names = self.collection_names()
        vectors = sum(self.collection(name).vector_count for name in names)
        return {"collections": len(names), "vectors": vectors, "bytes": self.disk_bytes()}

    def disk_bytes(self) -> int:
        """Bytes of all files under the tenant directory."""
        total = 0
        for root, _dirs, files in os.walk(self.directory):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except FileNotFoundError:
                    continue
        return total

    @property
    def memory_bytes(self) -> int:
        """Approximate memory held by loaded collections."""
        return sum(c.memory_bytes for c in list(self._collections.values()))

    def close(self) -> None:
        """Wait for running operations, close every file and give up the directory lock."""
        reason = StoreError(ErrorCode.NOT_OWNER, "tenant is no longer served by this worker")
        self._shut(reason, remove_files=False)

    def delete_everything(self) -> None:
        """Remove every file of the tenant (explicit admin delete), then close."""
        self._shut(StoreError(ErrorCode.NOT_OWNER, "tenant was deleted"), remove_files=True)

    def _shut(self, reason: StoreError, remove_files: bool) -> None:
        with self._lock:
            if self._closed is not None:
                return
            self._closed = reason
            for collection in self._collections.values():
                collection.close(reason)
            self._collections.clear()
            # Files go while the lock is still held, so no other worker sees them half gone.
            if remove_files and self.directory.exists():
                remove_tree_durably(self.directory, trash_name_for(self.tenant))
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = -1

    def _take_ownership(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.directory.parent)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise StoreError(
                ErrorCode.UNAVAILABLE, "tenant is held by another worker; try again shortly"
            ) from exc
        self._lock_fd = fd

    def _remove_leftovers(self) -> None:
        # A crash during delete_everything leaves hot/.trash-<tenant>-<hex>; it is ours now.
        for entry in self.directory.parent.glob(f".trash-{self.tenant}-*"):
            if entry.is_dir() and len(entry.name) == len(f".trash-{self.tenant}-") + 32:
                shutil.rmtree(entry, ignore_errors=True)
        for entry in self.directory.iterdir():
            if is_trash_name(entry.name) or (
                entry.name.startswith(".") and entry.name.endswith(".tmp")
            ):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
