"""How every long-running ``vectorpanda`` process learns it should stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable

log = logging.getLogger("vectorpanda.shutdown")


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; call from inside the running event loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def stop_children(procs: Iterable[asyncio.subprocess.Process], grace_s: float) -> None:
    """SIGTERM every child still running, then wait; SIGKILL one that outlasts ``grace_s``."""
    procs = list(procs)
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            log.error("child pid %s did not stop in %.0f s; killing it", proc.pid, grace_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
