"""Free space as a resource: refuse growing writes before the disk is full.

Below the floor (VP_MIN_FREE_BYTES; by default the larger of 1 GiB and 5 % of
the filesystem) upserts, metadata updates and collection creation are refused
with ``insufficient_storage``; reads, deletes and compaction go on, since they
are how an operator or a client gets space back. An ENOSPC that happens anyway
(one write larger than the space left) gets the same answer.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from workers.errors import StoreError
from workers.protocol import ErrorCode, Op

log = logging.getLogger(__name__)

GIB = 1024 * 1024 * 1024
DEFAULT_FLOOR_FRACTION = 0.05
# Operations that make a tenant's files grow.
GROWING_OPS = frozenset(
    {
        Op.CREATE_COLLECTION.value,
        Op.UPSERT.value,
        Op.UPDATE_METADATA.value,
        Op.RESTORE_TENANT.value,
    }
)
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_out_of_space(exc: BaseException) -> bool:
    """Whether an exception is (or was caused by) a full disk or an exhausted quota."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def out_of_space_error() -> StoreError:
    """The refusal a client sees, saying what to do about it."""
    return StoreError(
        ErrorCode.INSUFFICIENT_STORAGE,
        "The service is short of storage space, so writes are refused "
        "for now; reads and deletes still work. Deleting vectors or collections you no "
        "longer need frees space; the operators have been told. Retry later.",
    )


@dataclass(frozen=True, slots=True)
class StoreSpace:
    """One directory's filesystem: free and total bytes, and the floor for writes."""

    free_bytes: int
    total_bytes: int
    min_free_bytes: int

    @property
    def short(self) -> bool:
        return self.free_bytes < self.min_free_bytes

    def report(self) -> dict[str, int]:
        return {
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "min_free_bytes": self.min_free_bytes,
        }


class SpaceGuard:
    """Measures the hot and cold stores; refuses growing writes when hot is short."""

    def __init__(self, hot_dir: Path, cold_dir: Path | None, min_free_bytes: int | None) -> None:
        self.hot_dir = hot_dir
        self.cold_dir = cold_dir
        self.min_free_bytes = min_free_bytes

    def measure(self, directory: Path) -> StoreSpace:
        st = os.statvfs(directory)
        # f_bavail: what an unprivileged writer (our uid) may still use.
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        floor = self.min_free_bytes
        if floor is None:
            floor = max(GIB, int(total * DEFAULT_FLOOR_FRACTION))
        return StoreSpace(free, total, floor)

    def report(self) -> dict[str, dict[str, int]]:
        """Per store, for the heartbeat; a store that cannot be measured is left out."""
        stores = {"hot": self.hot_dir, "cold": self.cold_dir}
        report: dict[str, dict[str, int]] = {}
        for name, directory in stores.items():
            if directory is None:
                continue
            try:
                report[name] = self.measure(directory).report()
            except OSError as exc:  # e.g. cold not created yet
                log.debug("cannot measure %s store %s: %s", name, directory, exc)
        return report

    def check_write(self, op: str) -> None:
        """Raise insufficient_storage for a growing write while the hot store is short."""
        if op not in GROWING_OPS:
            return
        try:
            space = self.measure(self.hot_dir)
        except OSError:
            return  # cannot tell: let the write itself find out
        if space.short:
            log.warning(
                "refusing %s: hot store has %d bytes free, below the floor of %d",
                op,
                space.free_bytes,
                space.min_free_bytes,
            )
            raise out_of_space_error()
