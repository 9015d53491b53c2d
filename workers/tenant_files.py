"""A tenant directory's files outside its collections: its lock, its leftovers, and
what can still be said of a collection that failed its integrity check.

Part of ``workers.tenant_store``, kept apart so the store reads as its collections.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from workers.collection_spec import CollectionSpec
from workers.durable_files import fsync_dir, is_trash_name
from workers.errors import StoreError
from workers.integrity import IntegrityError
from workers.protocol import ErrorCode
from workers.segment import SPEC_FILE, read_manifest

LOCK_FILE = ".lock"

__all__ = [
    "LOCK_FILE",
    "DamagedCollection",
    "describe_damaged",
    "lock_directory",
    "remove_leftovers",
]


@dataclass(frozen=True, slots=True)
class DamagedCollection:
    """A collection refused after a failed integrity check, as far as it can be described."""

    error: StoreError
    info: dict[str, Any] | None  # INFO from its spec file, if that file is readable
    rows: int  # the manifest's row count (0 if unknown), for usage and quotas
    retry_at: float


def lock_directory(directory: Path) -> int:
    """Create the tenant directory if needed and lock it exclusively; return the fd.

    UNAVAILABLE if another worker holds it. Closing the descriptor releases the lock.
    """
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        fsync_dir(directory.parent)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise StoreError(
            ErrorCode.UNAVAILABLE, "tenant is held by another worker; try again shortly"
        ) from exc
    return fd


def remove_leftovers(directory: Path, tenant: str) -> None:
    """Clear what interrupted removals and writes left behind (the lock is ours)."""
    # A crash during delete_everything leaves hot/.trash-<tenant>-<hex>; it is ours now.
    for entry in directory.parent.glob(f".trash-{tenant}-*"):
        if entry.is_dir() and len(entry.name) == len(f".trash-{tenant}-") + 32:
            shutil.rmtree(entry, ignore_errors=True)
    for entry in directory.iterdir():
        if is_trash_name(entry.name) or (
            entry.name.startswith(".") and entry.name.endswith(".tmp")
        ):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def describe_damaged(directory: Path) -> tuple[dict[str, Any] | None, int]:
    """What can still be said of a damaged collection: INFO from its spec, its row count."""
    try:
        rows = read_manifest(directory).rows or 0
    except (OSError, IntegrityError):
        rows = 0
    try:
        spec = CollectionSpec.from_json(orjson.loads((directory / SPEC_FILE).read_bytes()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, rows
    return spec.info(rows), rows
