"""How the worker's C heap gives memory back to the system.

glibc serves blocks above a threshold with their own ``mmap`` and returns them on
free, but it raises that threshold to the size of each such block freed (up to
32 MiB). A worker frees many large blocks (graph and table arrays as they grow, fresh
buffers, bulk-write frames), after which same-sized blocks come from the heap and
their freed pages stay in the process: measured, about 40 MiB of RSS per 50k x 384
vectors indexed. A fixed threshold keeps large blocks on ``mmap``.

Freed small blocks are another matter: graph insertion runs in the maintenance thread
and its OpenMP threads, each with its own malloc arena, and the free pages left in
those arenas stay resident. ``give_back`` (``malloc_trim``) returns them when the
maintenance thread runs out of work (measured: about 3 MiB per 50k x 384 indexed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)
# Blocks this big or bigger get their own mapping; smaller ones stay on the heap.
MMAP_THRESHOLD_BYTES = 256 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def keep_large_blocks_mapped(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (no dynamic raise); False where that is unavailable."""
    try:
        mallopt = _libc().mallopt  # type: ignore[union-attr]
    except AttributeError:
        return False  # no libc found, or not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not done:
        log.warning("could not fix the malloc mmap threshold; RSS may stay high after loads")
    return done


def give_back() -> bool:
    """Return the free pages of every malloc arena to the system (glibc's
    ``malloc_trim``); False where that is unavailable or nothing was returned."""
    try:
        trim = _libc().malloc_trim  # type: ignore[union-attr]
    except AttributeError:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
