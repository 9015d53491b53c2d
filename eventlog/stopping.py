"""Waiting between tries of a long-running loop, cut short when the process stops.

Every service loop (health checks, flushes, reconnects, polling consumers) sleeps
between rounds with ``wait_or_stop``. It lives in ``eventlog``, the base layer the
coordinator, projections, scheduler, notifier and the shell all import; workers
import no other component and keep their own.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set, whichever comes first; True once stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
