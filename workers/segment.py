"""Segment generations and the manifest that names the current one.

A collection directory holds ``collection.json``, ``manifest.json``, the current
``seg-<gen>/`` (vectors.npy, ids.json, metadata.jsonl), the write-ahead logs
``wal-<n>.log`` with ``n >= gen`` (replayed in order on load; compaction starts a new
log before it writes the next segment, so writes never wait for it), and for an
``hnsw`` collection ``hnsw.index`` (derived data, rebuilt if missing or corrupt).
Any other segment, any older log and any temp file is an orphan of an interrupted
compaction.

The manifest records the size and CRC32 of ``collection.json`` and of every file of
its segment, and a CRC32 of itself; a load verifies them before it reads anything
(see ``workers.integrity``). A manifest without them predates the checks: it loads
unverified, and the next compaction writes a manifest that has them.

For a tenant with a data key the segment files and the index are sealed (see
``workers.sealed``; the checksums are of the ciphertext) and the manifest says
``"key_version": n``: from then on a plaintext file in their place is refused. The
manifest and ``collection.json`` stay plaintext; they hold only the collection's
shape (name, dimension, metric, index parameters), file sizes and checksums.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import orjson

from workers.durable_files import fsync_dir, is_trash_name, write_bytes_durably
from workers.integrity import ChecksummingWriter, FileChecksum, IntegrityError
from workers.sealed import Keyring, SealedWriter, is_sealed, open_bytes, open_file, seal_or_plain

MANIFEST = "manifest.json"
SPEC_FILE = "collection.json"
_ORPHAN_RE = re.compile(r"^(seg-\d+|\..*\.tmp)$")
_WAL_RE = re.compile(r"^wal-(\d+)\.log$")
SEGMENT_FILES = ("ids.json", "metadata.jsonl", "vectors.npy")


@dataclass(frozen=True, slots=True)
class Manifest:
    """Which segment and write-ahead log make up the collection right now."""

    generation: int
    segment: str
    wal: str
    # Relative path -> checksum of collection.json and the segment's files; None in a
    # manifest written before checksums existed (loaded unverified).
    checksums: Mapping[str, FileChecksum] | None = None
    rows: int | None = None  # live rows in the segment (a hint while it cannot load)
    # The data key version its segment and index are sealed with; None: plaintext (written
    # before encryption, or for a tenant without a key). Once set, plaintext is refused.
    key_version: int | None = None

    @property
    def sealed(self) -> bool:
        """Whether the collection's files are encrypted."""
        return self.key_version is not None

    @classmethod
    def for_generation(
        cls,
        generation: int,
        checksums: Mapping[str, FileChecksum] | None = None,
        rows: int | None = None,
        key_version: int | None = None,
    ) -> Manifest:
        """The manifest naming generation ``generation``'s files."""
        return cls(
            generation, f"seg-{generation}", f"wal-{generation}.log", checksums, rows, key_version
        )

    def expected_files(self) -> list[str]:
        """The files whose checksums a complete manifest records."""
        return [SPEC_FILE, *(f"{self.segment}/{name}" for name in SEGMENT_FILES)]


# Rows per block when a segment's vectors are written (16 MiB at 384 dimensions).
WRITE_BLOCK_ROWS = 10_000


class RowBlocks(Protocol):
    """A float32 matrix handed out a block of rows at a time, for writing a segment of
    vectors that are not copied whole first (an HNSW collection's, read from its graph)."""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, dimension)."""
        ...

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        """The matrix in order, up to ``rows`` rows per block; a block is valid only
        until the next one is asked for."""
        ...


@dataclass(frozen=True, slots=True)
class SegmentData:
    """The live rows of a collection in row order."""

    ids: list[str]
    metadata: list[dict[str, Any] | None]
    vectors: np.ndarray | RowBlocks


def read_manifest(directory: Path) -> Manifest:
    """Read the current manifest; IntegrityError if it is damaged (FileNotFoundError if absent)."""
    try:
        doc = orjson.loads((directory / MANIFEST).read_bytes())
        if not isinstance(doc, dict):
            raise ValueError("manifest is not an object")
        check = doc.pop("check", None)
        if check is not None and check != _self_check(doc):
            raise ValueError("manifest does not match its own CRC32")
        checksums = None
        if "files" in doc:
            checksums = {str(k): FileChecksum.from_json(v) for k, v in doc["files"].items()}
        rows = doc.get("rows")
        if rows is not None and (not isinstance(rows, int) or rows < 0):
            raise ValueError("manifest row count is malformed")
        version = doc.get("key_version")
        if version is not None and (not isinstance(version, int) or version < 0):
            raise ValueError("manifest key version is malformed")
        manifest = Manifest.for_generation(int(doc["generation"]), checksums, rows, version)
        if doc.get("segment") != manifest.segment or doc.get("wal") != manifest.wal:
            raise ValueError("manifest names unexpected files")
        if checksums is not None and sorted(checksums) != sorted(manifest.expected_files()):
            raise ValueError("manifest checksums name unexpected files")
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise IntegrityError(MANIFEST, f"unreadable manifest ({exc})") from exc
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically make ``manifest`` the current one."""
    doc: dict[str, Any] = {
        "generation": manifest.generation,
        "segment": manifest.segment,
        "wal": manifest.wal,
    }
    if manifest.rows is not None:
        doc["rows"] = manifest.rows
    if manifest.key_version is not None:
        doc["key_version"] = manifest.key_version
    if manifest.checksums is not None:
        doc["files"] = {k: v.to_json() for k, v in sorted(manifest.checksums.items())}
        doc["check"] = _self_check(doc)
    write_bytes_durably(directory / MANIFEST, orjson.dumps(doc))


def write_segment(
    directory: Path, name: str, data: SegmentData, keyring: Keyring | None = None
) -> dict[str, FileChecksum]:
    """Write a complete segment as ``directory/name`` via a temp dir and rename.

    Returns the checksum of each file (keyed ``name/file``) as written, for the manifest.
    With a keyring every file is sealed under its current key (streamed, chunk by chunk).
    """
    temp = directory / f".{name}-{uuid.uuid4().hex}.tmp"
    temp.mkdir()
    checksums: dict[str, FileChecksum] = {}
    try:
        ids = seal_or_plain(orjson.dumps(data.ids), keyring)
        _write_synced(temp / "ids.json", ids)
        checksums[f"{name}/ids.json"] = FileChecksum.of_bytes(ids)
        lines = b"".join(orjson.dumps(m) + b"\n" for m in data.metadata)
        lines = seal_or_plain(lines, keyring)
        _write_synced(temp / "metadata.jsonl", lines)
        checksums[f"{name}/metadata.jsonl"] = FileChecksum.of_bytes(lines)
        with (temp / "vectors.npy").open("wb") as fh:
            writer = ChecksummingWriter(fh)
            if keyring is None:
                write_npy(writer, data.vectors)
            else:
                sealer = SealedWriter(writer, keyring)
                write_npy(sealer, data.vectors)
                sealer.close()
            fh.flush()
            os.fsync(fh.fileno())
        checksums[f"{name}/vectors.npy"] = writer.checksum
        fsync_dir(temp)
        os.rename(temp, directory / name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(directory)
    return checksums


def write_npy(sink: BinaryIO | Any, vectors: np.ndarray | RowBlocks) -> None:
    """The bytes ``np.save`` writes for a float32 matrix, written from its blocks as
    they are (np.save would copy each of its chunks to a bytes object first)."""
    rows, dimension = vectors.shape
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, dimension)}
    np.lib.format.write_array_header_1_0(sink, header)
    if isinstance(vectors, np.ndarray):
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        blocks: Iterator[np.ndarray] = (
            matrix[start : start + WRITE_BLOCK_ROWS] for start in range(0, rows, WRITE_BLOCK_ROWS)
        )
    else:
        blocks = vectors.blocks(WRITE_BLOCK_ROWS)
    for block in blocks:
        if len(block):
            sink.write(np.ascontiguousarray(block, dtype="<f4").data.cast("B"))


def read_segment(
    path: Path, dimension: int, keyring: Keyring | None = None, allow_plain: bool = True
) -> SegmentData:
    """Read a segment; IntegrityError (naming the file) if a part is unreadable or they disagree.

    Sealed files are decrypted (every chunk authenticated); plaintext ones are read as
    they are only when ``allow_plain`` (a manifest written before encryption).
    """
    name = path.name

    def damaged(file: str, exc: Exception) -> IntegrityError:
        return IntegrityError(f"{name}/{file}", f"unreadable ({exc})")

    def plain(file: str) -> bytes:
        raw = (path / file).read_bytes()
        return open_bytes(raw, keyring, f"{name}/{file}", allow_plain)

    try:
        ids = orjson.loads(plain("ids.json"))
    except (ValueError, FileNotFoundError) as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise damaged("ids.json", exc) from exc
    try:
        lines = plain("metadata.jsonl").splitlines()
        metadata = [orjson.loads(line) for line in lines]
    except (ValueError, FileNotFoundError) as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise damaged("metadata.jsonl", exc) from exc
    try:
        vectors = _load_vectors(path / "vectors.npy", keyring, f"{name}/vectors.npy", allow_plain)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise damaged("vectors.npy", exc) from exc
    if vectors.dtype != np.dtype("<f4") or vectors.ndim != 2 or vectors.shape[1] != dimension:
        raise IntegrityError(f"{name}/vectors.npy", "not a float32 matrix of the dimension")
    n = vectors.shape[0]
    if not isinstance(ids, list) or len(ids) != n or len(metadata) != n:
        raise IntegrityError(name, "segment parts do not agree")
    return SegmentData(ids=list(ids), metadata=metadata, vectors=vectors)


def _load_vectors(path: Path, keyring: Keyring | None, file: str, allow_plain: bool) -> np.ndarray:
    with path.open("rb") as fh:
        sealed = is_sealed(fh.read(8))
    if not sealed:
        if not allow_plain:
            raise IntegrityError(file, "file is not encrypted, but the collection is")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    data = open_file(path, keyring, file, allow_plain)
    # The matrix is a view of the decrypted bytes (read-only, like the mmap above): one
    # copy of the data in memory, not two.
    head = io.BytesIO(data)
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    if fortran or len(shape) != 2:
        raise ValueError("vectors.npy is not a C-order matrix")
    count = int(np.prod(shape))
    return np.frombuffer(data, dtype=dtype, count=count, offset=head.tell()).reshape(shape)


def wal_numbers(directory: Path, manifest: Manifest) -> list[int]:
    """Numbers of the write-ahead logs to replay after the manifest's segment, in order."""
    numbers = {manifest.generation}
    for entry in directory.iterdir():
        match = _WAL_RE.fullmatch(entry.name)
        if match and int(match.group(1)) >= manifest.generation:
            numbers.add(int(match.group(1)))
    return sorted(numbers)


def wal_name(number: int) -> str:
    """File name of write-ahead log ``number``."""
    return f"wal-{number}.log"


def remove_orphans(directory: Path, manifest: Manifest) -> None:
    """Delete files left by an interrupted compaction (never the current ones)."""
    removed = False
    for entry in directory.iterdir():
        if entry.name == manifest.segment:
            continue
        wal = _WAL_RE.fullmatch(entry.name)
        old_wal = wal is not None and int(wal.group(1)) < manifest.generation
        if old_wal or _ORPHAN_RE.fullmatch(entry.name) or is_trash_name(entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed = True
    if removed:
        fsync_dir(directory)


def _self_check(doc: dict[str, Any]) -> int:
    return zlib.crc32(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
