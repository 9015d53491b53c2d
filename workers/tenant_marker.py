"""Where a tenant's files are (hot, or cold behind a location marker) and the lock that
keeps workers from loading a tenant while it is moved or backed up from its cold copy.

Apart from ``tenant_move`` so that backups can take the same lock without importing the
mover (and through it the tenant store: no import cycle).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from workers.collection_spec import check_tenant_id
from workers.errors import StoreError
from workers.protocol import ErrorCode

LOCATIONS_DIR = ".locations"
LOCK_FILE = ".lock"  # workers.tenant_files.LOCK_FILE (not imported: it pulls in FAISS)
HOT, COLD = "hot", "cold"


def marker_path(hot: Path, tenant: str) -> Path:
    return hot / LOCATIONS_DIR / check_tenant_id(tenant)


def read_marker(hot: Path, tenant: str) -> dict[str, Any] | None:
    """The marker's contents if the tenant is in cold storage, else None."""
    try:
        doc = orjson.loads(marker_path(hot, tenant).read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict) or doc.get("location") != COLD:
        raise StoreError(ErrorCode.INTERNAL, f"location marker of {tenant} is malformed")
    return doc


@contextmanager
def tenant_lock(hot: Path, tenant: str) -> Iterator[None]:
    """Hold the tenant's directory lock (if it has a hot directory) so no worker loads it."""
    path = hot / tenant / LOCK_FILE
    if not path.parent.is_dir():
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StoreError(
                ErrorCode.UNAVAILABLE, "tenant is still held by a worker; retry shortly"
            ) from exc
        yield
    finally:
        os.close(fd)
