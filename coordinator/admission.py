"""A bounded line per client: so many requests running, so many more waiting, then "no".

Used by the coordinator's admission gate (every data-plane request) and by the
router (a client's filtered requests, the expensive kind). A client's backlog
waits on itself; nothing here knows about HTTP or workers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field


@dataclass(slots=True)
class _ClientLine:
    """One client's requests inside the coordinator: running, and waiting their turn."""

    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class ClientAdmission:
    """At most ``max_running`` requests per client in flight, ``max_waiting`` more queued.

    A client's backlog waits on itself: past the queue it is refused at once,
    so no client can fill the coordinator with its own requests.
    """

    def __init__(self, max_running: int, max_waiting: int) -> None:
        if max_running < 1 or max_waiting < 0:
            raise ValueError("max_running must be >= 1 and max_waiting >= 0")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self._lines: dict[str, _ClientLine] = {}

    def running(self, client_id: str) -> int:
        line = self._lines.get(client_id)
        return 0 if line is None else line.running

    async def enter(self, client_id: str) -> bool:
        """Take a running slot (waiting for one if the queue has room); False when full."""
        line = self._lines.get(client_id)
        if line is None:
            line = self._lines[client_id] = _ClientLine()
        if line.running < self.max_running and not line.waiting:
            line.running += 1
            return True
        if len(line.waiting) >= self.max_waiting:
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                # The slot was handed to us as we were cancelled: pass it on.
                self.leave(client_id)
            else:
                # leave() may already have dropped our cancelled turn from the line
                with suppress(ValueError):
                    line.waiting.remove(turn)
            raise
        return True

    def leave(self, client_id: str) -> None:
        """Give the slot to the client's next waiting request, or free it."""
        line = self._lines[client_id]
        while line.waiting:
            turn = line.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot moves to it; running stays the same
                return
        line.running -= 1
        if line.running == 0:
            del self._lines[client_id]
