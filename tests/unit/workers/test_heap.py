"""The worker fixes glibc's mmap threshold so freed large blocks leave the process."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

PROBE = """
import numpy as np
from workers.heap import keep_large_blocks_mapped

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if {fix}:
    assert keep_large_blocks_mapped()
# Large blocks freed one by one, small long-lived ones made between them.
keep, big = [], []
for i in range(64):
    block = np.ones(3 * 2**20 // 8)
    if big:
        big.pop()
    big.append(block)
    keep.append(np.ones(16))
before = rss_mib()
big.clear()
del block
print(rss_mib() - before)
"""


def _freed_mib(fix: bool) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(fix=fix)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_freed_large_block_leaves_the_process() -> None:
    # The last 3 MiB block is returned at once: RSS falls by about its size.
    assert _freed_mib(fix=True) <= -2.5


TRIM_PROBE = """
import numpy as np
from workers.heap import give_back, keep_large_blocks_mapped

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

keep_large_blocks_mapped()
# 40 MiB of heap blocks (below the mmap threshold), each followed by a small one that
# stays: the freed blocks are holes the heap's top cannot shrink past, so free() alone
# leaves their pages resident.
blocks, pins = [], []
for _ in range(320):
    blocks.append(np.ones(128 * 1024 // 8))
    pins.append(np.ones(4096 // 8))
before = rss_mib()
blocks.clear()
freed = rss_mib()
give_back()
print(before - freed, before - rss_mib())
"""


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_give_back_returns_the_free_pages_inside_the_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True
    )
    by_free, by_give_back = (float(x) for x in out.stdout.split())
    assert by_free < 10  # free() kept the pages (the heap's top is pinned)
    assert by_give_back >= 30  # give_back returned most of the 40 MiB
