"""Segment generations and the manifest that names the current one.

A collection directory holds ``collection.json``, ``manifest.json``, the current
``seg-<gen>/`` (vectors.npy, ids.json, metadata.jsonl) and ``wal-<gen>.log``.
Anything else matching those patterns is an orphan of an interrupted compaction.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from workers.durable_files import fsync_dir, is_trash_name, write_bytes_durably

MANIFEST = "manifest.json"
SPEC_FILE = "collection.json"
_ORPHAN_RE = re.compile(r"^(seg-\d+|wal-\d+\.log|\..*\.tmp)$")


@dataclass(frozen=True, slots=True)
class Manifest:
    """Which segment and write-ahead log make up the collection right now."""

    generation: int
    segment: str
    wal: str

    @classmethod
    def for_generation(cls, generation: int) -> Manifest:
        """The manifest naming generation ``generation``'s files."""
        return cls(generation, f"seg-{generation}", f"wal-{generation}.log")


@dataclass(frozen=True, slots=True)
class SegmentData:
    """The live rows of a collection in row order."""

    ids: list[str]
    metadata: list[dict[str, Any] | None]
    vectors: np.ndarray


def read_manifest(directory: Path) -> Manifest:
    """Read the current manifest of a collection directory."""
    doc = orjson.loads((directory / MANIFEST).read_bytes())
    manifest = Manifest.for_generation(int(doc["generation"]))
    if doc.get("segment") != manifest.segment or doc.get("wal") != manifest.wal:
        raise ValueError("manifest names unexpected files")
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically make ``manifest`` the current one."""
    doc = {"generation": manifest.generation, "segment": manifest.segment, "wal": manifest.wal}
    write_bytes_durably(directory / MANIFEST, orjson.dumps(doc))


def write_segment(directory: Path, name: str, data: SegmentData) -> None:
    """Write a complete segment as ``directory/name`` via a temp dir and rename."""
    temp = directory / f".{name}-{uuid.uuid4().hex}.tmp"
    temp.mkdir()
    try:
        _write_synced(temp / "ids.json", orjson.dumps(data.ids))
        lines = b"".join(orjson.dumps(m) + b"\n" for m in data.metadata)
        _write_synced(temp / "metadata.jsonl", lines)
        with (temp / "vectors.npy").open("wb") as fh:
            np.save(fh, np.ascontiguousarray(data.vectors, dtype="<f4"), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(temp)
        os.rename(temp, directory / name)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(directory)


def read_segment(path: Path, dimension: int) -> SegmentData:
    """Read a segment; raise ValueError if its parts do not agree."""
    ids = orjson.loads((path / "ids.json").read_bytes())
    metadata = [orjson.loads(line) for line in (path / "metadata.jsonl").read_bytes().splitlines()]
    vectors = np.load(path / "vectors.npy", mmap_mode="r", allow_pickle=False)
    if vectors.dtype != np.dtype("<f4") or vectors.ndim != 2:
        raise ValueError("segment vectors are not a float32 matrix")
    n = vectors.shape[0]
    if vectors.shape[1] != dimension or len(ids) != n or len(metadata) != n:
        raise ValueError("segment parts do not agree")
    return SegmentData(ids=list(ids), metadata=metadata, vectors=vectors)


def remove_orphans(directory: Path, manifest: Manifest) -> None:
    """Delete files left by an interrupted compaction (never the current ones)."""
    removed = False
    for entry in directory.iterdir():
        if entry.name in (manifest.segment, manifest.wal):
            continue
        if _ORPHAN_RE.fullmatch(entry.name) or is_trash_name(entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed = True
    if removed:
        fsync_dir(directory)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
