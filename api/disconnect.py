"""Stop a request's worker-side work when its client goes away before the answer.

Starlette does not cancel a handler when the client disconnects, so an abandoned
filtered query would run on until its deadline. The handler's worker call races the
ASGI disconnect message; on disconnect it is cancelled, which makes the router send
CANCEL to the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from coordinator.errors import TenantUnavailable

T = TypeVar("T")


async def _disconnected(request: Request) -> None:
    # The body has been read by now, so the next ASGI message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``, or cancel it and answer 503 if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise TenantUnavailable("The client went away before the answer.")
    return task.result()
