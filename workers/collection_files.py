"""A collection's files: written whole when it is created, verified and read back on load.

Loading never changes a file before the manifest's checksums have passed, so a damaged
collection is left exactly as it was found for the operators.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from workers.collection_spec import CollectionSpec
from workers.durable_files import fsync_dir, write_bytes_durably
from workers.hnsw_index import CorruptIndexError, HnswIndex
from workers.integrity import FileChecksum, IntegrityError, verify_files
from workers.metadata_patch import patched
from workers.sealed import WAL_HEADER_SIZE, WAL_MAGIC, Keyring, open_file
from workers.segment import (
    SPEC_FILE,
    Manifest,
    SegmentData,
    read_manifest,
    read_segment,
    remove_orphans,
    wal_name,
    wal_numbers,
    write_manifest,
    write_segment,
)
from workers.vector_table import VectorTable, normalized
from workers.wal import DeleteRecord, MetadataRecord, WalRecord, WriteAheadLog

log = logging.getLogger(__name__)

INDEX_FILE = "hnsw.index"


@dataclass(slots=True)
class LoadedCollection:
    """Everything a collection holds open, as read back from its files."""

    spec: CollectionSpec
    manifest: Manifest
    wal: WriteAheadLog
    wal_number: int
    table: VectorTable
    index: HnswIndex | None


def write_new_collection(
    tenant_dir: Path, spec: CollectionSpec, keyring: Keyring | None = None
) -> Path:
    """Write an empty collection in a temp dir and rename it into place; its directory."""
    final = tenant_dir / spec.name
    temp = tenant_dir / f".{spec.name}-{uuid.uuid4().hex}.tmp"
    temp.mkdir()
    try:
        spec_bytes = orjson.dumps(spec.to_json())
        write_bytes_durably(temp / SPEC_FILE, spec_bytes)
        segment = Manifest.for_generation(0).segment
        empty = np.zeros((0, spec.dimension), dtype=np.float32)
        checksums = write_segment(temp, segment, SegmentData([], [], empty), keyring)
        checksums[SPEC_FILE] = FileChecksum.of_bytes(spec_bytes)
        version = None if keyring is None else keyring.current
        manifest = Manifest.for_generation(0, checksums, rows=0, key_version=version)
        WriteAheadLog(temp / manifest.wal, keyring).close()
        write_manifest(temp, manifest)
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(tenant_dir)
    return final


def read_collection(
    directory: Path, fresh_limit: int | None, keyring: Keyring | None = None
) -> LoadedCollection:
    """Verify, then read: the manifest's segment, a replay of its WALs, its saved index.

    Sealed files are decrypted with ``keyring``; plaintext ones are accepted only under
    a manifest written before encryption (the caller then re-encrypts the collection).
    """
    manifest = read_manifest(directory)
    if manifest.checksums is None:
        _note_unverified(directory)
    else:
        verify_files(directory, manifest.checksums)
    spec = _read_spec(directory)
    plain_ok = not manifest.sealed
    segment = read_segment(directory / manifest.segment, spec.dimension, keyring, plain_ok)
    remove_orphans(directory, manifest)
    table = VectorTable(spec.dimension, normalize=spec.metric == "cosine")
    table.load(segment)
    numbers = wal_numbers(directory, manifest)
    for number in numbers:
        wal = WriteAheadLog(directory / wal_name(number), keyring, plain_ok)
        try:
            for record in wal.replay():
                apply_record(table, None, record)
        finally:
            wal.close()
    # An empty log after the manifest's own one holds nothing; appending goes to the
    # last log that does (or would) hold records.
    while len(numbers) > 1 and _holds_nothing(directory / wal_name(numbers[-1])):
        (directory / wal_name(numbers.pop())).unlink()
        fsync_dir(directory)
    wal = WriteAheadLog(directory / wal_name(numbers[-1]), keyring, plain_ok)
    index = None
    if spec.index == "hnsw":
        index = _load_index(directory, spec, table, fresh_limit, keyring, plain_ok)
        # The index now holds every live vector: the table stops holding them twice.
        table.detach(index)
    return LoadedCollection(spec, manifest, wal, numbers[-1], table, index)


def _holds_nothing(path: Path) -> bool:
    size = path.stat().st_size
    return size == 0 or (size == WAL_HEADER_SIZE and path.read_bytes().startswith(WAL_MAGIC))


def apply_record(table: VectorTable, index: HnswIndex | None, record: WalRecord) -> None:
    """Apply one logged write to the rows in memory (and to the index, if given)."""
    if isinstance(record, DeleteRecord):
        table.remove(record.ids)
        if index is not None:
            index.remove(record.ids)
        return
    if isinstance(record, MetadataRecord):
        # Metadata only: the vectors, and so the index, stay as they are.
        for vector_id in record.ids:
            row = table.row_of(vector_id)
            if row is not None:
                table.metadata[row] = patched(table.metadata[row], record.set, record.unset)
        return
    if record.vectors.shape[1] != table.dimension:
        raise ValueError("write-ahead log record has the wrong dimension")
    table.put(record.ids, record.metadata, record.vectors)
    if index is not None:
        index.put(record.ids, normalized(record.vectors) if table.normalizes else record.vectors)


def _read_spec(directory: Path) -> CollectionSpec:
    try:
        return CollectionSpec.from_json(orjson.loads((directory / SPEC_FILE).read_bytes()))
    except (ValueError, KeyError, TypeError, AttributeError, FileNotFoundError) as exc:
        raise IntegrityError(SPEC_FILE, f"unreadable collection spec ({exc})") from exc


_unverified_noted: set[Path] = set()
_unverified_lock = threading.Lock()


def _note_unverified(directory: Path) -> None:
    # Once per collection per process: a warning per load would drown the log.
    with _unverified_lock:
        if directory in _unverified_noted:
            return
        _unverified_noted.add(directory)
    log.warning(
        "tenant %s: collection %s has no segment checksums (written before integrity checks); "
        "loading it unverified until its next compaction writes them",
        directory.parent.name,
        directory.name,
    )


def _load_index(
    directory: Path,
    spec: CollectionSpec,
    table: VectorTable,
    fresh_limit: int | None,
    keyring: Keyring | None,
    plain_ok: bool,
) -> HnswIndex:
    params = spec.hnsw or {}
    index = HnswIndex(
        table,
        spec.metric,
        int(params["m"]),
        int(params["ef_construction"]),
        fresh_limit,
    )
    path = directory / INDEX_FILE
    try:
        # A sealed index that fails authentication is tampering or damage: IntegrityError
        # (the collection is refused), not a silent rebuild over the evidence.
        index.restore(open_file(path, keyring, INDEX_FILE, plain_ok), table)
        return index
    except FileNotFoundError:
        pass
    except (CorruptIndexError, OSError) as exc:
        log.warning(
            "tenant %s: index of %s is unusable (%s); rebuilding it",
            directory.parent.name,
            spec.name,
            exc,
        )
        index = HnswIndex(table, spec.metric, index.m, index.ef_construction, fresh_limit)
    index.put_missing(table)
    index.dirty = True
    return index
