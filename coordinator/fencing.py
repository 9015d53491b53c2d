"""Fencing a silent worker that runs on this machine (``vectorpanda fleet``).

A worker that misses its heartbeats may only be frozen (SIGSTOP, a long GC
pause, a hung disk): it still holds its tenants' file locks, and nobody else
can load them until it dies. When the coordinator and its workers share one
machine and one user (VP_FENCE_LOCAL_WORKERS), the coordinator kills the
worker itself before handing its tenants on. The pid comes from the worker's
HELLO, so it is only killed after /proc confirms that it is that very worker:
a ``vectorpanda worker`` process started with the same VP_WORKER_ID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from coordinator.hub import WorkerLink

log = logging.getLogger("vectorpanda.fencing")

FENCE_WAIT_S = 5.0


def is_local_worker(pid: int, worker_id: str, proc: Path = Path("/proc")) -> bool:
    """Whether ``pid`` is a live ``vectorpanda worker`` with VP_WORKER_ID=worker_id."""
    if pid <= 1:
        return False
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        environ = (proc / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        b"vectorpanda" in argv
        and b"worker" in argv
        and f"VP_WORKER_ID={worker_id}".encode() in environ
    )


def has_exited(pid: int, proc: Path = Path("/proc")) -> bool:
    """Gone, or a zombie: its files (and so its locks) are closed either way."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return True
    # the state letter follows the parenthesised command name
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


async def fence_local_worker(link: WorkerLink) -> bool:
    """SIGKILL the silent worker's process and wait until it has exited; True if fenced."""
    if not is_local_worker(link.pid, link.worker_id):
        log.warning(
            "not fencing worker %s: pid %s is not a local vectorpanda worker with that id",
            link.worker_id,
            link.pid,
        )
        return False
    log.warning(
        "fencing worker %s (pid %s): declared down after missed heartbeats; "
        "killing it so its tenants' locks are released",
        link.worker_id,
        link.pid,
    )
    try:
        os.kill(link.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + FENCE_WAIT_S
    while not has_exited(link.pid):
        if time.monotonic() > deadline:
            log.error("fenced worker %s (pid %s) has not exited yet", link.worker_id, link.pid)
            return False
        await asyncio.sleep(0.01)
    return True
