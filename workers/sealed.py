"""Encryption at rest of a tenant's files: AES-256-GCM under the client's data key.

The worker never sees the master key; the coordinator sends the tenant's plaintext
data key(s) with ASSIGN and the worker keeps them (a ``Keyring``) only while it owns
the tenant.

A sealed file is a 32-byte header followed by chunks::

    header  = b"VPSEAL1\\n" | u32 key_version | u32 chunk_size | file_id (16 random bytes)
    chunk i = u32 ciphertext_length | nonce (12 random bytes) | AES-GCM(plaintext) + tag

Each chunk's associated data is ``header | u64 i | u8 last``: a chunk moved to another
position, to another file (another file id) or to another tenant (another key) fails
authentication, and so does a file cut at a chunk boundary (its last chunk is missing
the ``last`` flag; a file always ends with one, empty if need be). Nonces are random
96-bit values drawn per chunk; a data key seals far fewer than 2^32 chunks before it
is rotated, well inside AES-GCM's bound for random nonces.

The write-ahead log seals each record on its own (``seal_record``/``open_record``) so a
torn tail is still found and dropped record by record; see ``workers.wal``.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.integrity import IntegrityError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"VPSEAL1\n"
_HEADER = struct.Struct("<8sII16s")
HEADER_SIZE = _HEADER.size
CHUNK_SIZE = 1 << 20
NONCE_SIZE = 12
TAG_SIZE = 16
_LEN = struct.Struct("<I")
_AAD_TAIL = struct.Struct("<QB")
KEY_BYTES = 32


def new_aead(key: bytes) -> AESGCM:
    """AES-GCM under ``key``. The cryptography library (about 6 MiB of a worker's RSS)
    is imported here, so a worker whose tenants are not encrypted never loads it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


@dataclass(frozen=True, slots=True)
class Keyring:
    """A tenant's data keys by version; new files are sealed with ``current``."""

    current: int
    keys: Mapping[int, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError("the current key version has no key")
        if any(len(k) != KEY_BYTES for k in self.keys.values()):
            raise ValueError("data keys are 256-bit")

    def aead(self, version: int, file: str) -> AESGCM:
        """The cipher for key ``version``; IntegrityError if this worker was not given it."""
        key = self.keys.get(version)
        if key is None:
            raise IntegrityError(file, f"sealed with data key version {version}, not held")
        return new_aead(key)

    def __repr__(self) -> str:  # never print key bytes
        return f"Keyring(current={self.current}, versions={sorted(self.keys)})"

    @classmethod
    def from_wire(cls, doc: Any) -> Keyring:
        """Parse ASSIGN's ``keys`` entry: ``{"current": v, "keys": {"v": hex}}``."""
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
            raise ValueError("keys must be {current, keys}")
        current = doc.get("current")
        if not isinstance(current, int) or isinstance(current, bool):
            raise ValueError("keys.current must be an integer")
        keys = {int(v): bytes.fromhex(k) for v, k in doc["keys"].items() if isinstance(k, str)}
        return cls(current, keys)

    def to_wire(self) -> dict[str, Any]:
        """The ASSIGN form (hex key bytes; sent only over the authenticated worker socket)."""
        return {"current": self.current, "keys": {str(v): k.hex() for v, k in self.keys.items()}}


def is_sealed(data: bytes | memoryview) -> bool:
    """Whether bytes start like a sealed file."""
    return bytes(data[: len(MAGIC)]) == MAGIC


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + _AAD_TAIL.pack(index, 1 if last else 0)


class SealedWriter:
    """A binary file-like object that seals what is written through it, chunk by chunk.

    ``close()`` writes the last chunk; the underlying file is left open for the caller
    to fsync.
    """

    def __init__(self, sink: Any, keyring: Keyring, chunk_size: int = CHUNK_SIZE) -> None:
        self._sink = sink
        self._aead = new_aead(keyring.keys[keyring.current])
        self._header = _HEADER.pack(MAGIC, keyring.current, chunk_size, os.urandom(16))
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        sink.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer ``data``; seal and emit every full chunk."""
        self._buffer += data
        size, start = self._chunk_size, 0
        if len(self._buffer) > size:
            # One pass over the full chunks, then one move of the rest to the front.
            with memoryview(self._buffer) as view:
                while len(self._buffer) - start > size:
                    self._emit(view[start : start + size], last=False)
                    start += size
            del self._buffer[:start]
        return len(data)

    def close(self) -> None:
        """Seal the rest as the last chunk."""
        if not self._closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def _emit(self, plain: bytes | memoryview, last: bool) -> None:
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, plain, _aad(self._header, self._index, last))
        self._sink.write(_LEN.pack(len(sealed)) + nonce)
        self._sink.write(sealed)  # not concatenated: a chunk is copied once, not twice
        self._index += 1


def seal_bytes(data: bytes, keyring: Keyring, chunk_size: int = CHUNK_SIZE) -> bytes:
    """``data`` as a sealed file's bytes (the same format ``SealedWriter`` streams)."""
    aead = new_aead(keyring.keys[keyring.current])
    header = _HEADER.pack(MAGIC, keyring.current, chunk_size, os.urandom(16))
    parts = [header]
    view = memoryview(data)
    count = max(1, -(-len(data) // chunk_size))
    for index in range(count):
        piece = view[index * chunk_size : (index + 1) * chunk_size]
        nonce = os.urandom(NONCE_SIZE)
        sealed = aead.encrypt(nonce, piece, _aad(header, index, index == count - 1))
        parts += (_LEN.pack(len(sealed)) + nonce, sealed)
    return b"".join(parts)


def sealed_chunks(data: bytes | mmap.mmap, keyring: Keyring, file: str) -> Iterator[bytes]:
    """The plaintext chunks of a sealed file, each authenticated; IntegrityError otherwise."""
    if len(data) < HEADER_SIZE or not is_sealed(bytes(data[: len(MAGIC)])):
        raise IntegrityError(file, "not a sealed file")
    header = bytes(data[:HEADER_SIZE])
    _magic, version, _chunk, _file_id = _HEADER.unpack(header)
    aead = keyring.aead(version, file)
    view = memoryview(data)  # chunks are decrypted from the buffer, not from copies of it
    try:
        yield from _open_chunks(view, header, aead, file)
    finally:
        view.release()  # an mmap under it can then be closed


def _open_chunks(view: memoryview, header: bytes, aead: AESGCM, file: str) -> Iterator[bytes]:
    data = view
    offset, index, end = HEADER_SIZE, 0, len(view)
    while True:
        if offset + _LEN.size + NONCE_SIZE > end:
            raise IntegrityError(file, "sealed file is truncated")
        (length,) = _LEN.unpack_from(data, offset)
        body = offset + _LEN.size + NONCE_SIZE
        if length < TAG_SIZE or body + length > end:
            raise IntegrityError(file, f"sealed chunk {index} is truncated")
        nonce = bytes(data[offset + _LEN.size : body])
        last = body + length == end
        try:
            yield aead.decrypt(nonce, view[body : body + length], _aad(header, index, last))
        except _invalid_tag():
            raise IntegrityError(
                file, f"chunk {index} fails authentication (tampered, moved or wrong key)"
            ) from None
        if last:
            return
        offset, index = body + length, index + 1


def open_bytes(data: bytes, keyring: Keyring | None, file: str, allow_plain: bool) -> bytes:
    """The plaintext of a file's bytes: decrypted if sealed, else as is when allowed."""
    if is_sealed(data):
        if keyring is None:
            raise IntegrityError(file, "file is encrypted and no data key was given")
        return b"".join(sealed_chunks(data, keyring, file))
    if not allow_plain:
        raise IntegrityError(file, "file is not encrypted, but the collection is")
    return data


def open_file(path: Path, keyring: Keyring | None, file: str, allow_plain: bool) -> bytes:
    """A file's plaintext; a sealed one is decrypted straight from an mmap of it (no copy
    of the ciphertext is read into memory first)."""
    with path.open("rb") as fh:
        if not is_sealed(fh.read(len(MAGIC))) or os.fstat(fh.fileno()).st_size < HEADER_SIZE:
            fh.seek(0)
            return open_bytes(fh.read(), keyring, file, allow_plain)
        if keyring is None:
            raise IntegrityError(file, "file is encrypted and no data key was given")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return b"".join(sealed_chunks(mapped, keyring, file))


def seal_or_plain(data: bytes, keyring: Keyring | None) -> bytes:
    """Sealed bytes when the tenant has a keyring, else ``data`` unchanged."""
    return data if keyring is None else seal_bytes(data, keyring)


# ---- write-ahead log records -------------------------------------------------------

WAL_MAGIC = b"VPWAL1\n\0"
_WAL_HEADER = struct.Struct("<8sI16s")
WAL_HEADER_SIZE = _WAL_HEADER.size


def new_wal_header(keyring: Keyring) -> bytes:
    """The header of a new sealed write-ahead log (key version and a fresh file id)."""
    return _WAL_HEADER.pack(WAL_MAGIC, keyring.current, os.urandom(16))


def wal_header_version(header: bytes) -> int:
    """The key version a sealed log's header names."""
    return int(_WAL_HEADER.unpack(header)[1])


def seal_record(aead: AESGCM, header: bytes, offset: int, payload: bytes) -> bytes:
    """One record's sealed body (nonce + ciphertext), bound to its log and byte offset."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce + aead.encrypt(nonce, payload, header + struct.pack("<Q", offset))


def open_record(aead: AESGCM, header: bytes, offset: int, body: bytes) -> bytes | None:
    """A record's payload, or None if it does not authenticate at that offset of that log."""
    if len(body) < NONCE_SIZE + TAG_SIZE:
        return None
    try:
        return aead.decrypt(
            body[:NONCE_SIZE], body[NONCE_SIZE:], header + struct.pack("<Q", offset)
        )
    except _invalid_tag():
        return None
