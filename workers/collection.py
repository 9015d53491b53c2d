"""One collection: its files on disk, its rows in memory, and the locks between them."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from workers.collection_spec import CollectionSpec
from workers.durable_files import fsync_dir, write_bytes_durably
from workers.errors import StoreError
from workers.flat_index import exact_search
from workers.protocol import ErrorCode
from workers.read_write_lock import ReadWriteLock
from workers.segment import (
    SPEC_FILE,
    Manifest,
    SegmentData,
    read_manifest,
    read_segment,
    remove_orphans,
    write_manifest,
    write_segment,
)
from workers.vector_table import VectorTable, normalized
from workers.wal import DeleteRecord, UpsertRecord, WalRecord, WriteAheadLog

log = logging.getLogger(__name__)

Metadata = dict[str, Any] | None


class Collection:
    """Writes go to the WAL (fsynced) then to memory; searches run under a shared lock."""

    def __init__(
        self,
        directory: Path,
        spec: CollectionSpec,
        manifest: Manifest,
        wal: WriteAheadLog,
        table: VectorTable,
        compact_bytes: int,
    ) -> None:
        self.directory = directory
        self.spec = spec
        self._manifest = manifest
        self._wal = wal
        self._table = table
        self._compact_bytes = compact_bytes
        # Writers take _write_mutex for the whole write (WAL fsync, compaction) and
        # _rows only while changing memory, so searches wait only for the latter.
        self._write_mutex = threading.Lock()
        self._rows = ReadWriteLock()
        self._closed: StoreError | None = None

    @classmethod
    def create(cls, tenant_dir: Path, spec: CollectionSpec, compact_bytes: int) -> Collection:
        """Build the collection in a temp dir and rename it into place, so it appears whole."""
        final = tenant_dir / spec.name
        temp = tenant_dir / f".{spec.name}-{uuid.uuid4().hex}.tmp"
        temp.mkdir()
        try:
            write_bytes_durably(temp / SPEC_FILE, orjson.dumps(spec.to_json()))
            manifest = Manifest.for_generation(0)
            empty = np.zeros((0, spec.dimension), dtype=np.float32)
            write_segment(temp, manifest.segment, SegmentData([], [], empty))
            WriteAheadLog(temp / manifest.wal).close()
            write_manifest(temp, manifest)
            os.rename(temp, final)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        fsync_dir(tenant_dir)
        return cls.load(final, compact_bytes)

    @classmethod
    def load(cls, directory: Path, compact_bytes: int) -> Collection:
        """Open a collection: its manifest's segment plus a replay of its WAL."""
        spec = CollectionSpec.from_json(orjson.loads((directory / SPEC_FILE).read_bytes()))
        manifest = read_manifest(directory)
        remove_orphans(directory, manifest)
        table = VectorTable(spec.dimension, normalize=spec.metric == "cosine")
        table.load(read_segment(directory / manifest.segment, spec.dimension))
        wal = WriteAheadLog(directory / manifest.wal)
        try:
            for record in wal.replay():
                _apply(table, record)
        except BaseException:
            wal.close()
            raise
        return cls(directory, spec, manifest, wal, table, compact_bytes)

    @property
    def generation(self) -> int:
        """The current segment generation (grows by one per compaction)."""
        return self._manifest.generation

    @property
    def vector_count(self) -> int:
        """Number of live vectors."""
        return self._table.count

    @property
    def memory_bytes(self) -> int:
        """Approximate bytes of memory held."""
        return self._table.memory_bytes

    def info(self) -> dict[str, Any]:
        """The INFO object of the wire protocol."""
        doc: dict[str, Any] = {
            "name": self.spec.name,
            "dimension": self.spec.dimension,
            "metric": self.spec.metric,
            "index": self.spec.index,
            "vector_count": self._table.count,
            "created_at": self.spec.created_at,
        }
        if self.spec.hnsw is not None:
            doc["hnsw"] = self.spec.hnsw
        return doc

    def upsert(self, ids: list[str], metadata: list[Metadata], vectors: np.ndarray) -> int:
        """Insert or replace vectors (last wins within the batch); durable on return."""
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
            self._wal.append([record])
            with self._rows.writing():
                _apply(self._table, record)
            self._compact_if_due()
        return len(ids)

    def delete(self, ids: list[str]) -> int:
        """Remove vectors by id; return how many existed. Durable on return."""
        with self._write_mutex:
            self._check_open()
            present = [i for i in dict.fromkeys(ids) if self._table.row_of(i) is not None]
            if not present:
                return 0
            record = DeleteRecord(present)
            self._wal.append([record])
            with self._rows.writing():
                _apply(self._table, record)
            self._compact_if_due()
        return len(present)

    def query(
        self, queries: np.ndarray, top_k: int, include_metadata: bool, include_values: bool
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        """Exact top-k per query row; values (original) stacked in result order if asked."""
        self._check_vectors(queries, None)
        if self.spec.metric == "cosine":
            queries = normalized(queries)
        with self._rows.reading():
            self._check_open()
            scores, rows = exact_search(
                self._table.search_matrix(), queries, top_k, self.spec.metric
            )
            results: list[dict[str, Any]] = []
            ids, meta = self._table.ids, self._table.metadata
            for score_row, row_ids in zip(scores, rows, strict=True):
                live = row_ids[row_ids >= 0].tolist()
                result: dict[str, Any] = {
                    "ids": [ids[r] for r in live],
                    "scores": score_row[: len(live)].tolist(),
                }
                if include_metadata:
                    result["metadata"] = [meta[r] for r in live]
                results.append(result)
            values = None
            if include_values:
                flat = rows[rows >= 0]
                values = self._table.vectors()[flat]
        return results, values

    def fetch(self, ids: list[str]) -> tuple[list[str], list[Metadata], np.ndarray]:
        """Found ids in request order (missing ones absent), their metadata and values."""
        with self._rows.reading():
            self._check_open()
            found: list[str] = []
            rows: list[int] = []
            for vector_id in dict.fromkeys(ids):
                row = self._table.row_of(vector_id)
                if row is not None:
                    found.append(vector_id)
                    rows.append(row)
            meta = [self._table.metadata[r] for r in rows]
            values = self._table.vectors()[np.asarray(rows, dtype=np.int64)]
        return found, meta, values

    def compact(self) -> None:
        """Fold the WAL into a new segment generation now."""
        with self._write_mutex:
            self._check_open()
            self._compact_locked()

    def close(self, reason: StoreError) -> None:
        """Wait for running operations, then refuse all later ones with ``reason``."""
        with self._write_mutex, self._rows.writing():
            if self._closed is None:
                self._closed = reason
                self._wal.close()

    def _compact_if_due(self) -> None:
        if self._wal.size <= self._compact_bytes:
            return
        try:
            self._compact_locked()
        except Exception:
            # The write that triggered this is already durable in the WAL.
            log.exception("compaction of collection %s failed", self.spec.name)

    def _compact_locked(self) -> None:
        # Leftovers of an earlier failed attempt would block the rename below.
        remove_orphans(self.directory, self._manifest)
        nxt = Manifest.for_generation(self._manifest.generation + 1)
        # No copy needed: every change to the table happens under _write_mutex, held here.
        table = self._table
        snapshot = SegmentData(table.ids, table.metadata, table.vectors())
        write_segment(self.directory, nxt.segment, snapshot)
        new_wal = WriteAheadLog(self.directory / nxt.wal)
        try:
            write_manifest(self.directory, nxt)
        except BaseException:
            if _current_manifest(self.directory) != nxt:
                new_wal.close()
                remove_orphans(self.directory, self._manifest)
                raise
            log.exception("manifest of %s was replaced but not confirmed", self.spec.name)
        old_wal, self._wal, self._manifest = self._wal, new_wal, nxt
        old_wal.close()
        remove_orphans(self.directory, nxt)

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed

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
        if vectors.dtype != np.float32:
            raise StoreError(ErrorCode.INVALID, "vectors must be float32")
        if not np.isfinite(vectors).all():
            raise StoreError(ErrorCode.INVALID, "vectors must not contain NaN or Inf")


def _apply(table: VectorTable, record: WalRecord) -> None:
    if isinstance(record, DeleteRecord):
        table.remove(record.ids)
    else:
        if record.vectors.shape[1] != table.dimension:
            raise ValueError("write-ahead log record has the wrong dimension")
        table.put(record.ids, record.metadata, record.vectors)


def _current_manifest(directory: Path) -> Manifest | None:
    try:
        return read_manifest(directory)
    except (OSError, ValueError):
        return None
