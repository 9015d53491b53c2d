"""One collection: its rows in memory, its index, its log and the locks between them.

Creating and loading its files lives in ``workers.collection_files``, its searches
(query, micro-batched quick queries, fetch) in ``workers.collection_search``, list,
count and metadata updates in ``workers.collection_records``; writes, compaction (a
new segment generation) and index saves run here, the last two as background steps.

Lock order (never taken the other way round): ``_maint_lock`` (background steps and
close) -> ``_write_mutex`` (one write at a time: WAL fsync + memory) -> ``_rows``
(shared by searches, exclusive while memory changes).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from workers.backup_files import CollectionCut, current_files, link_files
from workers.collection_files import (
    INDEX_FILE,
    apply_record,
    read_collection,
    write_new_collection,
)
from workers.collection_records import CollectionRecords
from workers.collection_search import CollectionSearch
from workers.collection_spec import CollectionSpec
from workers.crash_points import crash_point
from workers.durable_files import write_durably
from workers.errors import StoreError
from workers.flat_index import ScanHelpers
from workers.hnsw_index import (
    INSERT_CHUNK,
    INSERT_CHUNK_IDLE,
    HnswIndex,
    add_with_threads,
    next_idle_chunk,
)
from workers.id_order import IdOrder
from workers.integrity import FileChecksum, file_checksum
from workers.maintenance import Maintenance
from workers.metadata_filter import Predicate, matching_rows
from workers.protocol import ErrorCode
from workers.read_write_lock import ReadWriteLock
from workers.sealed import Keyring, SealedWriter
from workers.segment import (
    SPEC_FILE,
    Manifest,
    read_manifest,
    remove_orphans,
    wal_name,
    write_manifest,
    write_segment,
)
from workers.vector_table import VectorTable
from workers.wal import DeleteRecord, UpsertRecord, WriteAheadLog
from workers.work_budget import WorkBudget, unbounded

log = logging.getLogger(__name__)
_F32 = np.dtype(np.float32)

Metadata = dict[str, Any] | None
# None: the fresh buffer's bound follows the dimension (workers.hnsw_index.fresh_limit_for).
DEFAULT_FRESH_LIMIT: int | None = None
# A graph is saved when its fresh buffer runs dry, and at least this often while
# steady writes keep it from running dry, so a reload never rebuilds from far back.
INDEX_SAVE_MAX_AGE_S = 300.0
# While vectors wait for the graph, the WAL may grow to this many times its compaction
# size before it is compacted (workers.collection.Collection._compaction_due).
COMPACT_DEFER_FACTOR = 4


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """Tuning shared by every collection of a worker."""

    compact_bytes: int
    fresh_limit: int | None = DEFAULT_FRESH_LIMIT
    maintenance: Maintenance = field(default_factory=Maintenance.shared)
    # The tenant's data keys (None: files are written in plaintext)
    keyring: Keyring | None = None


class Collection(CollectionRecords, CollectionSearch):
    """Writes go to the WAL (fsynced) then to memory; searches run under a shared lock."""

    def __init__(
        self,
        directory: Path,
        spec: CollectionSpec,
        manifest: Manifest,
        wal: WriteAheadLog,
        wal_number: int,
        table: VectorTable,
        index: HnswIndex | None,
        options: StoreOptions,
    ) -> None:
        self.directory = directory
        self.spec = spec
        self._manifest = manifest
        self._wal = wal
        self._wal_number = wal_number
        self._table = table
        self._index = index
        self._options = options
        self._maint_lock = threading.Lock()
        self._write_mutex = threading.Lock()
        self._rows = ReadWriteLock()
        self._closed: StoreError | None = None
        self._index_saved_at = time.monotonic()
        self._idle_chunk = INSERT_CHUNK_IDLE  # the next quiet-spell step (maintenance thread)
        self._id_order = IdOrder()
        self._request_maintenance()

    @classmethod
    def create(cls, tenant_dir: Path, spec: CollectionSpec, options: StoreOptions) -> Collection:
        """Build the collection in a temp dir and rename it into place, so it appears whole."""
        return cls.load(write_new_collection(tenant_dir, spec, options.keyring), options)

    @classmethod
    def load(cls, directory: Path, options: StoreOptions) -> Collection:
        """Open a collection: its manifest's segment, a replay of its WALs, its saved index.

        The manifest's checksums are verified before anything is read or changed; on a
        mismatch this raises IntegrityError and leaves every file as it was.
        """
        st = read_collection(directory, options.fresh_limit, options.keyring)
        collection = cls(
            directory, st.spec, st.manifest, st.wal, st.wal_number, st.table, st.index, options
        )
        keyring = options.keyring
        if keyring is not None and st.manifest.key_version != keyring.current:
            collection.reseal()
        return collection

    def reseal(self) -> None:
        """Rewrite every file under the current data key (upgrade from plaintext, rotation).

        Crash-safe by construction: the index is saved sealed first (readable under the
        old manifest too), then a compaction writes a new sealed generation and switches
        the manifest atomically; the old generation stays readable until that switch and
        is removed only after it. Running it again after a crash finishes the job.
        """
        keyring = self._options.keyring
        assert keyring is not None
        was = self._manifest.key_version
        with self._maint_lock:
            self._check_open()
            crash_point("reseal-start")
            if self._index is not None:
                self._save_index()
            crash_point("reseal-index-saved")
            self._compact_locked()
            crash_point("reseal-done")
        log.info(
            "tenant %s: collection %s re-encrypted (key version %s -> %d)",
            self.directory.parent.name,
            self.spec.name,
            "plaintext" if was is None else was,
            keyring.current,
        )

    @property
    def generation(self) -> int:
        """The current segment generation (grows with each compaction)."""
        return self._manifest.generation

    @property
    def key_version(self) -> int | None:
        """The data key version the current generation is sealed with (None: plaintext)."""
        return self._manifest.key_version

    @property
    def vector_count(self) -> int:
        """Number of live vectors."""
        return self._table.count

    @property
    def memory_bytes(self) -> int:
        """Approximate bytes of memory held."""
        extra = self._index.memory_bytes if self._index is not None else 0
        return self._table.memory_bytes + extra

    @property
    def index(self) -> HnswIndex | None:
        """The HNSW index (None for a flat collection)."""
        return self._index

    def info(self) -> dict[str, Any]:
        """The INFO object of the wire protocol."""
        return self.spec.info(self._table.count)

    @property
    def unindexed(self) -> int:
        """Vectors not yet in the HNSW graph (searched exactly meanwhile); 0 for flat."""
        return self._index.fresh_count if self._index is not None else 0

    def upsert(
        self,
        ids: list[str],
        metadata: list[Metadata],
        vectors: np.ndarray,
        admit: Callable[[int], None] | None = None,
    ) -> int:
        """Insert or replace vectors (last wins within the batch); durable on return.

        ``admit(new)`` is called with the number of ids not yet present, under the write
        lock, and may raise to refuse the write (tier quota) before anything is written.
        """
        self._check_vectors(vectors, len(ids))
        last = {vector_id: i for i, vector_id in enumerate(ids)}
        if len(last) < len(ids):
            keep = sorted(last.values())
            record = UpsertRecord(
                [ids[i] for i in keep], [metadata[i] for i in keep], vectors[keep]
            )
        else:
            record = UpsertRecord(list(ids), list(metadata), vectors)
        with self._write_mutex:
            self._check_open()
            if admit is not None:
                admit(sum(1 for i in record.ids if self._table.row_of(i) is None))
            if self._index is not None and not self._index.admits(len(record.ids)):
                raise StoreError(
                    ErrorCode.BUSY,
                    f"collection '{self.spec.name}' is still indexing recent writes; retry shortly",
                )
            self._wal.append([record])
            with self._rows.writing():
                apply_record(self._table, self._index, record)
                self._id_order.added(record.ids)
        self._request_maintenance()
        return len(ids)

    def delete(self, ids: list[str]) -> int:
        """Remove vectors by id; return how many existed. Durable on return."""
        with self._write_mutex:
            self._check_open()
            return self._delete_locked(list(dict.fromkeys(ids)))

    def delete_where(self, predicate: Predicate, budget: WorkBudget | None = None) -> int:
        """Remove every vector whose metadata matches; return how many. Durable on return.

        The budget is checked only while matching: once the delete is logged it finishes.
        """
        with self._write_mutex:
            self._check_open()
            table = self._table
            mask = matching_rows(predicate, table.metadata, budget or unbounded())
            return self._delete_locked([table.ids[r] for r in np.flatnonzero(mask)])

    def _delete_locked(self, ids: list[str]) -> int:
        present = [i for i in ids if self._table.row_of(i) is not None]
        if not present:
            return 0
        record = DeleteRecord(present)
        self._wal.append([record])
        with self._rows.writing():
            apply_record(self._table, self._index, record)
        self._request_maintenance()
        return len(present)

    def cut(self, staging: Path) -> CollectionCut:
        """Fix a consistency point for a backup: hard-link the current files into ``staging``.

        Held under the maintenance lock (no compaction or index save moves files) and the
        write lock (no write is half in the log), for a few links only; each log's length
        at this moment is where the backup's copy of it stops.
        """
        with self._maint_lock, self._write_mutex:
            self._check_open()
            names = current_files(self.directory, self._manifest)
            lengths = {wal_name(self._wal_number): self._wal.size}
            for name in names:
                if name.startswith("wal-") and name not in lengths:
                    lengths[name] = (self.directory / name).stat().st_size
            files = link_files(self.directory, names, lengths, staging)
            return CollectionCut(self.spec.name, self.spec.to_json(), self._table.count, files)

    # ---- background work ----------------------------------------------------------

    def run_maintenance(self) -> bool:
        """One background step: compaction if due, else graph insertion, rebuild or save."""
        with self._maint_lock:
            if self._closed is not None:
                return False
            if self._compaction_due():
                self._compact_locked()
                return True
            return self._index is not None and self._index_step()

    def _compaction_due(self) -> bool:
        """Whether the WAL is to be folded into a segment now. While the graph has
        vectors waiting, up to COMPACT_DEFER_FACTOR times the usual log: a bulk import
        is indexed first and compacted once, not rewritten in the middle of it (each
        compaction writes the whole collection anew)."""
        size, limit = self._wal.size, self._options.compact_bytes
        if self._index is not None and self._index.fresh_count:
            limit *= COMPACT_DEFER_FACTOR
        return size > limit

    def compact(self) -> None:
        """Fold the WAL into a new segment generation now (in the calling thread)."""
        with self._maint_lock:
            self._check_open()
            self._compact_locked()

    def flush_index(self) -> None:
        """Move every fresh vector into the graph now and save it (in the calling thread)."""
        with self._maint_lock:
            self._check_open()
            while self._index is not None and self._index_step():
                pass

    def close(self, reason: StoreError, save_index: bool = True) -> None:
        """Wait for running operations, save the index if it changed, refuse all later calls."""
        with self._maint_lock, self._write_mutex, self._rows.writing():
            if self._closed is not None:
                return
            self._closed = reason
            self._wal.close()
        if save_index and self._index is not None and self._index.dirty:
            try:
                self._save_index()
            except Exception:
                log.exception("could not save the index of %s on close", self.spec.name)

    def _request_maintenance(self) -> None:
        due = self._wal.size > self._options.compact_bytes
        if due or (self._index is not None and (self._index.fresh_count or self._index.dirty)):
            self._options.maintenance.request(self)

    def _index_step(self) -> bool:
        index = self._index
        assert index is not None
        threads = self._options.maintenance.build_threads()
        if threads == 1:
            chunk = INSERT_CHUNK
            self._idle_chunk = INSERT_CHUNK_IDLE  # a quiet spell starts small again
        else:
            chunk = self._idle_chunk
        with self._rows.reading():
            ids, versions, vectors, levels = index.take_fresh(chunk, hold=threads > 1)
        if ids:
            started = time.perf_counter()
            base = index.add_to_graph(vectors, threads, levels)
            if threads > 1:
                took = time.perf_counter() - started
                self._idle_chunk = next_idle_chunk(chunk, len(ids), took)
            with self._rows.writing():
                index.settle(ids, versions, base)
            if time.monotonic() - self._index_saved_at >= INDEX_SAVE_MAX_AGE_S:
                self._save_index()
            return True
        if index.needs_rebuild():
            self._rebuild_graph(index)
            return True
        if index.dirty:
            self._save_index()
        return False

    def _rebuild_graph(self, index: HnswIndex) -> None:
        # Only this thread adds to the graph, so it cannot change while the copy is built.
        with self._rows.reading():
            nodes, vectors = index.live_nodes()
        graph = index.new_graph()
        for start in range(0, len(vectors), 4096):
            threads = self._options.maintenance.build_threads()
            add_with_threads(graph, vectors[start : start + 4096], threads)
        with self._rows.writing():
            index.swap_graph(graph, nodes)

    def _save_index(self) -> None:
        index = self._index
        assert index is not None
        with self._rows.reading():
            names = index.node_names()
        keyring = self._options.keyring

        def fill(sink: BinaryIO) -> None:
            if keyring is None:
                index.write_file(sink, names)
                return
            sealer = SealedWriter(sink, keyring)
            index.write_file(sealer, names)
            sealer.close()

        index.dirty = False
        write_durably(self.directory / INDEX_FILE, fill)
        self._index_saved_at = time.monotonic()

    def _compact_locked(self) -> None:
        # Leftovers of an earlier failed attempt would block the renames below.
        remove_orphans(self.directory, self._manifest)
        number = self._wal_number + 1
        # Writes wait only for this swap of logs and the copy of the rows.
        keyring = self._options.keyring
        with self._write_mutex:
            self._check_open()
            new_wal = WriteAheadLog(self.directory / wal_name(number), keyring)
            old_wal, self._wal, self._wal_number = self._wal, new_wal, number
            snapshot = self._table.snapshot()
        old_wal.close()
        segment = Manifest.for_generation(number).segment
        checksums = write_segment(self.directory, segment, snapshot, keyring)
        checksums[SPEC_FILE] = self._spec_checksum()
        crash_point("compact-segment-written")
        version = None if keyring is None else keyring.current
        nxt = Manifest.for_generation(
            number, checksums, rows=len(snapshot.ids), key_version=version
        )
        try:
            write_manifest(self.directory, nxt)
        except BaseException:
            if _current_manifest(self.directory) != nxt:
                raise
            log.exception("manifest of %s was replaced but not confirmed", self.spec.name)
        self._manifest = nxt
        remove_orphans(self.directory, nxt)

    def _spec_checksum(self) -> FileChecksum:
        if self._manifest.checksums is not None:
            return self._manifest.checksums[SPEC_FILE]
        # Upgrading a collection written before checksums: the file parsed at load.
        return file_checksum(self.directory / SPEC_FILE)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    def _scan_helpers(self) -> ScanHelpers:
        return self._options.maintenance.scans

    def _check_vectors(self, vectors: np.ndarray, rows: int | None) -> None:
        expected = self.spec.dimension
        if vectors.ndim != 2:
            raise StoreError(ErrorCode.INVALID, "vectors must be a 2-D float32 array")
        if vectors.shape[1] != expected:
            raise StoreError(
                ErrorCode.INVALID,
                f"dimension mismatch: collection '{self.spec.name}' expects dimension "
                f"{expected}, got {vectors.shape[1]}",
            )
        if rows is not None and vectors.shape[0] != rows:
            raise StoreError(ErrorCode.INVALID, f"got {vectors.shape[0]} vectors for {rows} ids")
        if vectors.dtype != _F32:
            raise StoreError(ErrorCode.INVALID, "vectors must be float32")
        # Finite float32 values cannot overflow a float64 sum: it is finite exactly when
        # every value is (one reduction instead of a mask and a second one).
        if not math.isfinite(np.add.reduce(vectors, axis=None, dtype=np.float64)):
            raise StoreError(ErrorCode.INVALID, "vectors must not contain NaN or Inf")


def _current_manifest(directory: Path) -> Manifest | None:
    try:
        return read_manifest(directory)
    except (OSError, ValueError):
        return None
