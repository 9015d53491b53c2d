"""The write-ahead log: every acknowledged upsert, delete or metadata update, fsynced, in order.

File layout: a sequence of records ``u32 LE length | u32 LE CRC32(payload) | payload``.
Payload: one kind byte, then for an upsert ``u32 n | u32 d | u32 len | ids JSON |
u32 len | metadata JSON | n*d float32 LE``, for a delete ``u32 len | ids JSON``, for a
metadata update ``u32 len | ids JSON | u32 len | {"set": {...}, "unset": [...]} JSON``.

A tenant with a data key writes a sealed log instead (see ``workers.sealed``): a
28-byte header (magic, key version, random file id), then records ``u32 LE length |
nonce | AES-GCM(payload)``, each authenticated with the header and its own byte offset
as associated data. The tag replaces the CRC: a torn or damaged record fails to
authenticate. A log's format is read from its first bytes, so a plaintext log written
before encryption is still replayed (once; the collection is then re-encrypted).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from workers.durable_files import fsync_dir
from workers.fsync_stats import WAL_FSYNCS
from workers.integrity import IntegrityError
from workers.sealed import (
    WAL_HEADER_SIZE,
    WAL_MAGIC,
    Keyring,
    new_wal_header,
    open_record,
    seal_record,
    wal_header_version,
)

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<II")
_U32 = struct.Struct("<I")
_UPSERT = 1
_DELETE = 2
_METADATA = 3
_F32 = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class UpsertRecord:
    """Vectors written (or replaced) under their ids."""

    ids: list[str]
    metadata: list[dict[str, Any] | None]
    vectors: np.ndarray


@dataclass(frozen=True, slots=True)
class DeleteRecord:
    """Ids removed."""

    ids: list[str]


@dataclass(frozen=True, slots=True)
class MetadataRecord:
    """One update request: ``set`` merged into, ``unset`` removed from each id's metadata.

    The ids are the ones present when the update was accepted (a filter is resolved
    before logging), so replaying the record redoes exactly what was acknowledged.
    """

    ids: list[str]
    set: dict[str, Any]
    unset: list[str]


WalRecord = UpsertRecord | DeleteRecord | MetadataRecord


class CorruptRecordError(ValueError):
    """A payload that passed its CRC but does not decode; treated like a torn tail."""


def encode_record(record: WalRecord) -> bytes:
    """The payload bytes of one record."""
    ids = orjson.dumps(record.ids)
    if isinstance(record, DeleteRecord):
        return b"".join([bytes([_DELETE]), _U32.pack(len(ids)), ids])
    if isinstance(record, MetadataRecord):
        patch = orjson.dumps({"set": record.set, "unset": record.unset})
        return b"".join(
            [bytes([_METADATA]), _U32.pack(len(ids)), ids, _U32.pack(len(patch)), patch]
        )
    vectors = np.ascontiguousarray(record.vectors, dtype=_F32)
    n, d = vectors.shape
    meta = orjson.dumps(record.metadata)
    return b"".join(
        [
            bytes([_UPSERT]),
            _U32.pack(n),
            _U32.pack(d),
            _U32.pack(len(ids)),
            ids,
            _U32.pack(len(meta)),
            meta,
            vectors.tobytes(),
        ]
    )


def decode_record(payload: bytes) -> WalRecord:
    """Parse one payload; raise CorruptRecordError if it is not a well-formed record."""
    try:
        kind = payload[0]
        if kind == _DELETE:
            ids, end = _read_json(payload, 1)
            if end != len(payload):
                raise CorruptRecordError("trailing bytes in delete record")
            return DeleteRecord(ids=_as_ids(ids))
        if kind == _METADATA:
            return _decode_metadata(payload)
        if kind != _UPSERT:
            raise CorruptRecordError(f"unknown record kind {kind}")
        n, d = _HEAD.unpack_from(payload, 1)
        ids, offset = _read_json(payload, 1 + _HEAD.size)
        meta, offset = _read_json(payload, offset)
        if offset + n * d * 4 != len(payload) or len(ids) != n or len(meta) != n:
            raise CorruptRecordError("upsert record sizes do not agree")
        vectors = np.frombuffer(payload, dtype=_F32, count=n * d, offset=offset).reshape(n, d)
        return UpsertRecord(ids=_as_ids(ids), metadata=list(meta), vectors=vectors)
    except (IndexError, struct.error, orjson.JSONDecodeError, TypeError) as exc:
        raise CorruptRecordError(str(exc)) from exc


def _decode_metadata(payload: bytes) -> MetadataRecord:
    ids, offset = _read_json(payload, 1)
    patch, end = _read_json(payload, offset)
    if end != len(payload):
        raise CorruptRecordError("trailing bytes in metadata record")
    if not isinstance(patch, dict) or set(patch) != {"set", "unset"}:
        raise CorruptRecordError("metadata record patch is not {set, unset}")
    fields, unset = patch["set"], patch["unset"]
    if not isinstance(fields, dict) or not isinstance(unset, list):
        raise CorruptRecordError("metadata record patch has the wrong types")
    if not all(isinstance(name, str) for name in unset):
        raise CorruptRecordError("metadata record unset names are not strings")
    return MetadataRecord(ids=_as_ids(ids), set=fields, unset=unset)


def _read_json(payload: bytes, offset: int) -> tuple[Any, int]:
    (length,) = _U32.unpack_from(payload, offset)
    start = offset + _U32.size
    if start + length > len(payload):
        raise CorruptRecordError("json field runs past the record")
    return orjson.loads(payload[start : start + length]), start + length


def _as_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise CorruptRecordError("ids are not a list of strings")
    return value


def frame_record(payload: bytes) -> bytes:
    """Prefix a payload with its length and CRC32."""
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


class WriteAheadLog:
    """An append-only, fsynced log of records; replay drops a torn or corrupt tail."""

    def __init__(
        self, path: Path, keyring: Keyring | None = None, allow_plain: bool = True
    ) -> None:
        created = not path.exists()
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._header = self._open_header(keyring, allow_plain)
        except BaseException:
            os.close(self._fd)
            raise
        self._aead = None
        if self._header is not None:
            assert keyring is not None
            self._aead = keyring.aead(wal_header_version(self._header), path.name)
        if created:
            os.fsync(self._fd)
            fsync_dir(path.parent)
        self._size = os.fstat(self._fd).st_size

    def _open_header(self, keyring: Keyring | None, allow_plain: bool) -> bytes | None:
        """The sealed header (written now for a new log of a keyed tenant), or None if plain."""
        size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, WAL_HEADER_SIZE, 0)
        if head[: len(WAL_MAGIC)] == WAL_MAGIC and size >= WAL_HEADER_SIZE:
            if keyring is None:
                raise IntegrityError(self.path.name, "log is encrypted and no data key was given")
            return head
        if keyring is not None and (size == 0 or WAL_MAGIC.startswith(head)):
            # New (or a header torn before anything followed it): start it sealed.
            os.ftruncate(self._fd, 0)
            header = new_wal_header(keyring)
            os.write(self._fd, header)
            os.fsync(self._fd)
            return header
        if not allow_plain and size > 0:
            raise IntegrityError(self.path.name, "log is not encrypted, but the collection is")
        return None

    @property
    def sealed(self) -> bool:
        """Whether this log's records are encrypted."""
        return self._header is not None

    @property
    def size(self) -> int:
        """Bytes in the log, used to decide when to compact."""
        return self._size

    def append(self, records: Sequence[WalRecord]) -> None:
        """Write records and fsync; when this returns they survive a crash."""
        if not records:
            return
        start = self._size
        if self._header is None:
            data = b"".join(frame_record(encode_record(r)) for r in records)
        else:
            data = self._seal_all(start, records)
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            with WAL_FSYNCS.timed():
                os.fsync(self._fd)
        except BaseException:
            # A partial write must not sit in front of the next record.
            self._truncate(start)
            raise
        self._size = start + len(data)

    def _seal_all(self, start: int, records: Sequence[WalRecord]) -> bytes:
        assert self._aead is not None and self._header is not None
        parts, offset = [], start
        for record in records:
            body = seal_record(self._aead, self._header, offset, encode_record(record))
            parts.append(_U32.pack(len(body)) + body)
            offset += _U32.size + len(body)
        return b"".join(parts)

    def replay(self) -> Iterator[WalRecord]:
        """Yield records in order; cut off a torn tail, refuse damage in the middle.

        Only the last append can be torn (each append is fsynced before the
        next). A bad record followed by a valid one is therefore damage, not a
        tear: truncating there would drop acknowledged writes, so replay raises
        IntegrityError and leaves the file as it is. (After a power loss that
        persisted a multi-record append's pages out of order, this refuses an
        unacknowledged append too: the collection waits for an operator rather
        than risk cutting off acknowledged data.)
        """
        if self._header is not None:
            good = yield from self._replay_sealed()
        else:
            good = yield from self._replay_plain()
        end = os.fstat(self._fd).st_size
        if good < end and self._valid_record_after(good):
            raise IntegrityError(
                self.path.name, f"damaged record at byte {good} with intact records after it"
            )
        if good < end:
            log.warning(
                "write-ahead log %s: dropping %d bytes of torn tail", self.path.name, end - good
            )
            self._truncate(good)
        self._size = good

    def _replay_plain(self) -> Generator[WalRecord, None, int]:
        good = 0
        with self.path.open("rb") as fh:
            while True:
                head = fh.read(_HEAD.size)
                if len(head) < _HEAD.size:
                    break
                length, crc = _HEAD.unpack(head)
                payload = fh.read(length)
                # A zero length is never written; a zero-filled tail must not pass as data.
                if length == 0 or len(payload) < length or zlib.crc32(payload) != crc:
                    break
                try:
                    record = decode_record(payload)
                except CorruptRecordError:
                    break
                good += _HEAD.size + length
                yield record
        return good

    def _replay_sealed(self) -> Generator[WalRecord, None, int]:
        assert self._aead is not None and self._header is not None
        good = WAL_HEADER_SIZE
        with self.path.open("rb") as fh:
            fh.seek(good)
            while True:
                head = fh.read(_U32.size)
                if len(head) < _U32.size:
                    break
                (length,) = _U32.unpack(head)
                body = fh.read(length)
                payload = open_record(self._aead, self._header, good, body)
                if payload is None:
                    break
                try:
                    record = decode_record(payload)
                except CorruptRecordError:
                    break
                good += _U32.size + length
                yield record
        return good

    def _valid_record_after(self, bad_at: int) -> bool:
        if self._header is None:
            return _valid_record_after(self.path, bad_at)
        assert self._aead is not None
        data = self.path.read_bytes()
        for start in range(bad_at + 1, len(data) - _U32.size + 1):
            (length,) = _U32.unpack_from(data, start)
            end = start + _U32.size + length
            if length < 28 or end > len(data):
                continue
            payload = open_record(self._aead, self._header, start, data[start + _U32.size : end])
            if payload is not None:
                return True
        return False

    def _truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:
            log.exception("could not truncate write-ahead log %s", self.path.name)

    def close(self) -> None:
        """Close the file; the log must not be used afterwards."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _valid_record_after(path: Path, bad_at: int) -> bool:
    """Whether any intact record starts after the bad one at ``bad_at`` (a scan, rare path)."""
    data = path.read_bytes()
    for start in range(bad_at + 1, len(data) - _HEAD.size + 1):
        length, crc = _HEAD.unpack_from(data, start)
        end = start + _HEAD.size + length
        # Most offsets fail the length test at once (vector bytes read as huge lengths).
        if length == 0 or end > len(data):
            continue
        payload = data[start + _HEAD.size : end]
        if zlib.crc32(payload) != crc:
            continue
        try:
            decode_record(payload)
        except CorruptRecordError:
            continue
        return True
    return False
