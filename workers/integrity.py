"""Checksums of a collection's durable files, recorded in its manifest and verified on load.

CRC32 (zlib) plus the file size, not SHA-256: the threat is bit rot, torn writes and
operator mistakes, not an adversary (anyone who can rewrite a segment can rewrite the
manifest too, so a cryptographic digest would prove nothing more). CRC32 catches every
burst of up to 32 flipped bits and misses random damage with odds of 2^-32; the size
catches truncation before a byte is read. zlib's CRC32 runs at several GB/s, so
verifying a segment costs little next to reading it, and the write-ahead log and the
HNSW index file already use it.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


class IntegrityError(ValueError):
    """A durable file of a collection is missing, truncated or does not match its checksum.

    ``file`` is the path relative to the collection directory, safe to show the client.
    """

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileChecksum:
    """Size in bytes and CRC32 of one file's contents."""

    size: int
    crc32: int

    @classmethod
    def of_bytes(cls, data: bytes) -> FileChecksum:
        """The checksum of ``data``."""
        return cls(len(data), zlib.crc32(data))

    def to_json(self) -> dict[str, int]:
        """The manifest form."""
        return {"size": self.size, "crc32": self.crc32}

    @classmethod
    def from_json(cls, doc: Any) -> FileChecksum:
        """Parse the manifest form; ValueError if malformed."""
        if not isinstance(doc, dict):
            raise ValueError("checksum entry is not an object")
        size, crc = doc.get("size"), doc.get("crc32")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, crc)):
            raise ValueError("checksum entry is malformed")
        assert isinstance(size, int) and isinstance(crc, int)
        return cls(size, crc)


class ChecksummingWriter:
    """A binary file wrapper that checksums exactly the bytes written through it."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._crc = 0
        self._size = 0

    def write(self, data: bytes | memoryview) -> int:
        """Write and fold the bytes into the running checksum."""
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data) if isinstance(data, bytes) else data.nbytes
        return int(self._fh.write(data))

    @property
    def checksum(self) -> FileChecksum:
        """The checksum of everything written so far."""
        return FileChecksum(self._size, self._crc)


def file_checksum(path: Path) -> FileChecksum:
    """Read a file in chunks and checksum it."""
    crc, size = 0, 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return FileChecksum(size, crc)


def verify_files(directory: Path, expected: Mapping[str, FileChecksum]) -> None:
    """Check every listed file (relative to ``directory``); IntegrityError on the first bad one."""
    for name, want in sorted(expected.items()):
        path = directory / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IntegrityError(name, "file is missing") from None
        if size != want.size:
            raise IntegrityError(name, f"size is {size} bytes, the manifest says {want.size}")
        got = file_checksum(path)
        if got != want:
            raise IntegrityError(
                name, f"CRC32 is {got.crc32:08x}, the manifest says {want.crc32:08x}"
            )
