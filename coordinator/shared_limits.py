"""Per-client token buckets shared by every coordinator process on one machine.

With several coordinator processes behind one port (VP_COORDINATOR_PROCESSES) a
client's connections land on any of them, so each process keeping buckets of its own
would give a client N times its tier's rate. Here the buckets live in one memory-mapped
file (``<data>/run/rate-limits``, reset by ``vectorpanda up`` at start): a fixed table
of 32-byte slots, a client's slot found by hashing its id (open addressing, a few
probes). A decision locks just that slot (a POSIX record lock on its 32 bytes), refills,
takes and writes back: exact across processes, at the cost of two system calls
(measured in docs/process-model.md). The monotonic clock is the same in every process.

A client whose probes all find other live clients' slots (the table is full) falls back
to a bucket of this process alone: it then gets up to N times its rate, never less.
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import xxhash

from coordinator.rate_limit import ALLOW, Decision, RateLimiter

SLOT = struct.Struct("<Qddd")  # client hash, tokens, updated (monotonic s), burst
SLOT_BYTES = 32
SLOTS = 65_536
PROBES = 8
# A slot not used for this long holds a full bucket, the same as none: it may be reused.
STALE_S = 60.0


def table_path(run_dir: Path, host: str | None = None) -> Path:
    """The table of the processes sharing ``run_dir``; with ``host`` (members of a group
    spanning hosts, whose run directory may be on a network volume) one per host, since
    only one kernel's processes share a mapping."""
    if host is None:
        return run_dir / "rate-limits"
    return run_dir / f"rate-limits-{xxhash.xxh3_64_hexdigest(host.encode())}"


def reset_table(path: Path) -> None:
    """Create (or empty) the table file: every slot free."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, SLOTS * SLOT_BYTES)
    finally:
        os.close(fd)


class SharedRateLimiter(RateLimiter):
    """``RateLimiter`` with its buckets in a table shared by the processes that map it."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)  # the local fallback's buckets
        if not path.exists() or path.stat().st_size != SLOTS * SLOT_BYTES:
            reset_table(path)
        self._fd = os.open(path, os.O_RDWR)
        self._map = mmap.mmap(self._fd, SLOTS * SLOT_BYTES)
        self._clock = clock
        self.fallbacks = 0

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _lock(self, offset: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT_BYTES, offset, os.SEEK_SET)

    def _unlock(self, offset: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT_BYTES, offset, os.SEEK_SET)

    @staticmethod
    def _hash(client_id: str) -> int:
        return xxhash.xxh3_64_intdigest(client_id.encode()) | 1  # 0 marks a free slot

    def acquire(self, client_id: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        if rate <= 0:
            return ALLOW
        key = self._hash(client_id)
        now = self._clock()
        first = key % SLOTS
        for probe in range(PROBES):
            offset = ((first + probe) % SLOTS) * SLOT_BYTES
            self._lock(offset)
            try:
                owner, tokens, updated, _ = SLOT.unpack_from(self._map, offset)
                if owner == key:
                    tokens = min(burst, tokens + max(0.0, now - updated) * rate)
                elif owner == 0 or now - updated > STALE_S or updated > now + 1.0:
                    tokens = burst  # a free (or idle, or pre-reboot) slot: a full bucket
                else:
                    continue
                if tokens >= cost:
                    SLOT.pack_into(self._map, offset, key, tokens - cost, now, burst)
                    return ALLOW
                SLOT.pack_into(self._map, offset, key, tokens, now, burst)
                return Decision(False, max(1, math.ceil((cost - tokens) / rate)))
            finally:
                self._unlock(offset)
        self.fallbacks += 1
        return super().acquire(client_id, rate, burst, cost)

    def charge(self, client_id: str, tokens: float) -> None:
        if tokens <= 0:
            return
        key = self._hash(client_id)
        first = key % SLOTS
        for probe in range(PROBES):
            offset = ((first + probe) % SLOTS) * SLOT_BYTES
            self._lock(offset)
            try:
                owner, held, updated, burst = SLOT.unpack_from(self._map, offset)
                if owner == key:
                    SLOT.pack_into(
                        self._map, offset, key, max(-burst, held - tokens), updated, burst
                    )
                    return
            finally:
                self._unlock(offset)
        super().charge(client_id, tokens)
