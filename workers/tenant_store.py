"""One tenant's collections on disk, held under an exclusive lock while this worker owns it.

The tenant directory's lock, its leftovers and what can be said of a damaged
collection live in ``workers.tenant_files``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from workers.backup_files import finish_restores, swap_in
from workers.collection import Collection, Metadata, StoreOptions
from workers.collection_spec import CollectionSpec, check_collection_name, check_tenant_id
from workers.durable_files import remove_tree_durably, trash_name_for
from workers.errors import StoreError, collection_not_found
from workers.file_digests import tree_digests
from workers.integrity import IntegrityError
from workers.maintenance import Maintenance
from workers.protocol import COLLECTION_RE, ErrorCode
from workers.sealed import Keyring
from workers.segment import MANIFEST, read_manifest
from workers.tenant_files import LOCK_FILE as LOCK_FILE  # where tenant_move checks it
from workers.tenant_files import (
    DamagedCollection,
    describe_damaged,
    lock_directory,
    remove_leftovers,
)

log = logging.getLogger(__name__)

# A collection that failed its integrity check is not re-read (and re-logged) on every
# request; its files are checked again after this long, or after an unload or release.
INTEGRITY_RETRY_S = 30.0


class TenantStore:
    """Create, load, list and delete a tenant's collections; everything under ``hot/<tenant>``."""

    def __init__(self, hot_dir: Path, tenant: str, options: StoreOptions) -> None:
        self.tenant = check_tenant_id(tenant)
        self.directory = hot_dir / self.tenant
        self._options = options
        self._lock = threading.Lock()
        # Held across the count and the write of an upsert with a quota, so two
        # concurrent writes cannot both pass the same remaining headroom.
        self._quota_lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._unloaded_counts: dict[str, int] = {}
        self._damaged: dict[str, DamagedCollection] = {}
        self._lock_fd = -1
        self._closed: StoreError | None = None

    @classmethod
    def open(
        cls,
        hot_dir: Path,
        tenant: str,
        compact_bytes: int,
        *,
        fresh_limit: int | None = None,
        maintenance: Maintenance | None = None,
        keyring: Keyring | None = None,
    ) -> TenantStore:
        """Take the tenant's directory lock (UNAVAILABLE if another process holds it)."""
        options = StoreOptions(
            compact_bytes, maintenance=maintenance or Maintenance.shared(), keyring=keyring
        )
        if fresh_limit is not None:
            options = dataclasses.replace(options, fresh_limit=fresh_limit)
        store = cls(hot_dir, tenant, options)
        store.take_ownership()
        return store

    def create_collection(
        self, spec: CollectionSpec, max_collections: int | None = None
    ) -> dict[str, Any]:
        """Create an empty collection; CONFLICT if the name is taken, QUOTA_EXCEEDED if full."""
        with self._lock:
            self._check_open()
            if spec.name in self._collections or (self.directory / spec.name).exists():
                raise StoreError(ErrorCode.CONFLICT, f"collection '{spec.name}' already exists")
            if max_collections is not None:
                have = len(self._names_on_disk())
                if have >= max_collections:
                    raise StoreError(
                        ErrorCode.QUOTA_EXCEEDED,
                        f"collection quota exceeded: the tenant has {have} collections, "
                        f"the limit is {max_collections}",
                    )
            collection = Collection.create(self.directory, spec, self._options)
            self._collections[spec.name] = collection
        return collection.info()

    def upsert(
        self,
        name: str,
        ids: list[str],
        metadata: list[Metadata],
        vectors: np.ndarray,
        max_vectors: int | None = None,
    ) -> int:
        """Upsert into ``name``; with ``max_vectors``, refuse (writing nothing) past the quota."""
        collection = self.collection(name)
        if max_vectors is None:
            return collection.upsert(ids, metadata, vectors)
        with self._quota_lock:
            others = sum(self.vector_counts(exclude=name).values())

            def admit(new: int) -> None:
                current = others + collection.vector_count
                if current + new > max_vectors:
                    raise StoreError(
                        ErrorCode.QUOTA_EXCEEDED,
                        f"vector quota exceeded: the tenant has {current} vectors, this write "
                        f"adds {new}, the limit is {max_vectors}",
                    )

            return collection.upsert(ids, metadata, vectors, admit)

    def vector_counts(self, exclude: str | None = None) -> dict[str, int]:
        """Live vectors per collection, without loading collections counted before."""
        counts: dict[str, int] = {}
        for name in self.collection_names():
            if name == exclude:
                continue
            with self._lock:
                loaded = self._collections.get(name)
                known = self._unloaded_counts.get(name)
                damaged = self._damaged.get(name)
            if loaded is not None:
                counts[name] = loaded.vector_count
            elif known is not None:
                counts[name] = known
            elif damaged is not None:
                counts[name] = damaged.rows
            else:
                counts[name] = self._count_loading(name)
        return counts

    def _count_loading(self, name: str) -> int:
        try:
            return self.collection(name).vector_count
        except StoreError:
            # A damaged collection must not take its tenant's other collections down.
            with self._lock:
                damaged = self._damaged.get(name)
            if damaged is None:
                raise
            return damaged.rows

    def unload(self) -> int:
        """Drop every loaded collection from memory (saving indexes); return bytes freed.

        The tenant stays owned and locked; the next request loads what it needs.
        """
        with self._lock:
            loaded = dict(self._collections)
            self._collections.clear()
            self._damaged.clear()
        freed = 0
        for name, collection in loaded.items():
            freed += collection.memory_bytes
            self._unloaded_counts[name] = collection.vector_count
            collection.close(StoreError(ErrorCode.UNAVAILABLE, "collection was unloaded; retry"))
        return freed

    def set_keyring(self, keyring: Keyring | None) -> None:
        """Use new data keys: loaded collections are closed and re-read (and re-sealed) later."""
        with self._lock:
            self._check_open()
            self._options = dataclasses.replace(self._options, keyring=keyring)
            loaded = dict(self._collections)
            self._collections.clear()
            self._damaged.clear()
        for collection in loaded.values():
            collection.close(StoreError(ErrorCode.UNAVAILABLE, "data key changed; retry"))

    def reseal_all(self) -> list[str]:
        """Re-encrypt now every collection not under the current key; the names done.

        A collection already sealed under it is skipped after reading its manifest.
        """
        keyring = self._options.keyring
        done = []
        for name in self.collection_names():
            try:
                version = read_manifest(self.directory / name).key_version
            except (OSError, IntegrityError):
                version = None
            if keyring is not None and version == keyring.current:
                continue
            loaded = self.collection(name)  # loading re-seals it
            if keyring is not None and loaded.key_version != keyring.current:
                loaded.reseal()
            done.append(name)
        return done

    @property
    def maintenance(self) -> Maintenance:
        """The background thread that compacts and indexes this tenant's collections."""
        return self._options.maintenance

    @property
    def loaded_collections(self) -> int:
        """Collections currently held in memory."""
        return len(self._collections)

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
            damaged = self._damaged.get(name)
            if damaged is not None and time.monotonic() < damaged.retry_at:
                raise damaged.error
            try:
                loaded = Collection.load(path, self._options)
            except IntegrityError as exc:
                raise self._refuse_damaged(name, exc) from None
            except Exception as exc:
                log.exception("tenant %s: collection %s failed to load", self.tenant, name)
                raise StoreError(
                    ErrorCode.UNAVAILABLE, f"collection '{name}' cannot be loaded right now"
                ) from exc
            self._collections[name] = loaded
            self._unloaded_counts.pop(name, None)
            self._damaged.pop(name, None)
            return loaded

    def _refuse_damaged(self, name: str, exc: IntegrityError) -> StoreError:
        # One line, no traceback: the operators need the tenant, collection and file.
        log.error(
            "integrity check failed: tenant %s collection %s file %s: %s; "
            "refusing to serve it, its files are left untouched",
            self.tenant,
            name,
            exc.file,
            exc.reason,
        )
        error = StoreError(
            ErrorCode.UNAVAILABLE,
            f"collection '{name}' failed an integrity check ({exc.file}); its data is kept "
            "untouched for the operators; contact support",
        )
        info, rows = describe_damaged(self.directory / name)
        self._damaged[name] = DamagedCollection(
            error, info, rows, time.monotonic() + INTEGRITY_RETRY_S
        )
        return error

    def collection_names(self) -> list[str]:
        """Names of all collections on disk, sorted."""
        with self._lock:
            self._check_open()
            return self._names_on_disk()

    def _names_on_disk(self) -> list[str]:
        return sorted(
            entry.name
            for entry in self.directory.iterdir()
            if COLLECTION_RE.fullmatch(entry.name) and (entry / MANIFEST).is_file()
        )

    def list_collections(self) -> list[dict[str, Any]]:
        """INFO of every collection, sorted by name.

        A collection refused by its integrity check is listed from its spec file (its
        count from the manifest), so the others stay listable; it is left out only if
        even that file is unreadable.
        """
        infos = []
        for name in self.collection_names():
            try:
                infos.append(self.collection(name).info())
            except StoreError:
                with self._lock:
                    damaged = self._damaged.get(name)
                if damaged is None:
                    raise
                if damaged.info is not None:
                    infos.append(damaged.info)
        return infos

    def delete_collection(self, name: str) -> list[dict[str, str]]:
        """Remove a collection's files durably; NOT_FOUND if it does not exist.

        Returns the removed files with the SHA-256 of each (as stored: ciphertext).
        """
        check_collection_name(name)
        with self._lock:
            self._check_open()
            path = self.directory / name
            loaded = self._collections.pop(name, None)
            self._unloaded_counts.pop(name, None)
            self._damaged.pop(name, None)
            if loaded is None and not (path / MANIFEST).is_file():
                raise collection_not_found(name)
            if loaded is not None:
                loaded.close(collection_not_found(name), save_index=False)
            label = f"{self.directory.parent.name}/{self.tenant}/{name}"
            removed = tree_digests(path, label)
            remove_tree_durably(path, trash_name_for(name))
            return removed

    def install_restored(self, name: str, ready: Path) -> None:
        """Swap a verified restored copy in as collection ``name`` (replacing the live one)."""
        check_collection_name(name)
        with self._lock:
            self._check_open()
            loaded = self._collections.pop(name, None)
            self._unloaded_counts.pop(name, None)
            self._damaged.pop(name, None)
            if loaded is not None:
                loaded.close(
                    StoreError(ErrorCode.UNAVAILABLE, f"collection '{name}' was restored; retry"),
                    save_index=False,
                )
            swap_in(self.directory, name, ready, trash_name_for(name))

    def usage(self) -> dict[str, int]:
        """Collections, live vectors and bytes on disk for this tenant."""
        counts = self.vector_counts()
        return {
            "collections": len(counts),
            "vectors": sum(counts.values()),
            "bytes": self.disk_bytes(),
        }

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
                collection.close(reason, save_index=not remove_files)
            self._collections.clear()
            # Files go while the lock is still held, so no other worker sees them half gone.
            if remove_files and self.directory.exists():
                remove_tree_durably(self.directory, trash_name_for(self.tenant))
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = -1

    def take_ownership(self) -> None:
        """Lock the tenant directory and clear leftovers of interrupted removals."""
        self._lock_directory()
        finish_restores(self.directory)
        self._remove_leftovers()

    def _lock_directory(self) -> None:
        self._lock_fd = lock_directory(self.directory)

    def _remove_leftovers(self) -> None:
        remove_leftovers(self.directory, self.tenant)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    def loaded_collection(self, name: object) -> Collection | None:
        """The collection if it is in memory, else None; never waits or reads a file."""
        if self._closed is not None or not isinstance(name, str):
            return None
        return self._collections.get(name)  # a dict read is atomic: no lock needed
