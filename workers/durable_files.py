"""Crash-safe file operations: every change is on disk before we report it done."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

# Writes of a streamed file reach the kernel in pieces this large.
WRITE_BUFFER_BYTES = 1 << 20


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (creations, renames, removals) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Persist a file's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (see ``write_durably``)."""
    write_durably(path, lambda sink: sink.write(data))


def write_durably(path: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` atomically with what ``fill`` writes to the file it is given: a
    temp file, written, fsynced, renamed, then the directory fsynced. Streaming keeps
    a large file (an index) from being assembled in memory first."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "wb", buffering=WRITE_BUFFER_BYTES, closefd=False) as sink:
            fill(sink)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temp, path)
    fsync_dir(path.parent)


def remove_tree_durably(path: Path, trash_name: str) -> None:
    """Remove a directory so a crash never leaves a half-removed copy that still loads.

    The directory is first renamed to ``trash_name`` (a name loaders ignore) in the
    same parent, the rename is made durable, and only then are its files deleted.
    """
    if not path.exists():
        return
    trash = path.with_name(trash_name)
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def trash_name_for(name: str) -> str:
    """A unique hidden name for a directory on its way to deletion."""
    return f".trash-{name}-{uuid.uuid4().hex}"


def is_trash_name(name: str) -> bool:
    """Whether a directory entry is left over from an interrupted removal."""
    return name.startswith(".trash-")
