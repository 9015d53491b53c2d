"""Targets of the processes test_process_group_parts.py spawns.

Apart from the test module so that each spawned child imports only what it runs
(the test module's imports take seconds per child on a loaded machine).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from coordinator.leader import Leadership
from coordinator.shared_limits import SharedRateLimiter


def take(path: str, count: int, out: Any) -> None:
    limiter = SharedRateLimiter(Path(path))
    out.put(sum(limiter.acquire("flooder", 0.001, 100).allowed for _ in range(count)))


def hold_lock(path: str, ready: Any) -> None:
    leadership = Leadership(Path(path))
    assert leadership.try_acquire()
    ready.set()
    time.sleep(60)
