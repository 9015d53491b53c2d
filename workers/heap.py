"""How a server process's C heap gives memory back to the system.

glibc serves blocks above a threshold with their own ``mmap`` and returns them on
free, but it raises that threshold to the size of each such block freed (up to
32 MiB). A worker frees many large blocks (graph and table arrays as they grow, fresh
buffers, bulk-write frames), after which same-sized blocks come from the heap and
their freed pages stay in the process: measured, about 40 MiB of RSS per 50k x 384
vectors indexed. A fixed threshold keeps large blocks on ``mmap``.

The threshold is 1 MiB, not lower: every block above it costs a ``mmap``, a page fault
per 4 KiB page as it is first written and a ``munmap`` when freed, and request-sized
blocks come and go all the time (a 550 KB query body or frame is copied four or five
times on its way through websockets and the frame decoder). With the threshold at
256 KiB and glibc's 128 KiB trim threshold (the heap's top given back, then faulted in
again, at each such free), that churn of one 550 KB frame's buffers took 1.05 ms of
CPU; at 1 MiB with a 2 MiB trim threshold, 0.06 ms (the same loop, in-process). It
was the event loop's time: every other tenant's request waited on it. Blocks of 1 MiB
and more (arrays, bulk writes) still get their own mapping, and at most the trim
threshold of free memory stays on top of each heap.

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

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers (glibc malloc.h)
M_MMAP_THRESHOLD = -3
# Blocks this big or bigger get their own mapping; smaller ones stay on the heap.
MMAP_THRESHOLD_BYTES = 1024 * 1024
# Free memory on top of a heap beyond this is given back to the system at a free.
TRIM_THRESHOLD_BYTES = 2 * 1024 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def keep_large_blocks_mapped(
    threshold: int = MMAP_THRESHOLD_BYTES, trim: int = TRIM_THRESHOLD_BYTES
) -> bool:
    """Fix glibc's mmap and trim thresholds (no dynamic raise); False where that is
    unavailable."""
    try:
        mallopt = _libc().mallopt  # type: ignore[union-attr]
    except AttributeError:
        return False  # no libc found, or not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
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
