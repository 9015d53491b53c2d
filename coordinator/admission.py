"""A bounded line per client: so many requests running, so many more waiting, then "no".

Used by the coordinator's admission gate (every data-plane request) and by the
router (a client's filtered requests, the expensive kind). A client's backlog
waits on itself; nothing here knows about HTTP or workers.

Pacing (the router's filtered requests): while other clients are being served
(``contended``), a client's requests of the kind may keep the coordinator and its
worker busy only ``share`` of the time. After a request that took ``busy`` seconds
(beyond ``free_s``, which cheap requests never pass), the client's next one of the
kind starts only after a rest of ``(busy - free_s) * (1 / share - 1)``. A client
alone on the service is never paced.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

# A single request's rest is capped: one very slow request (up to the deadline) must
# not make the client's next ones wait past their own deadlines.
MAX_REST_S = 1.0
# Rests that have passed are forgotten once this many clients are remembered.
_PRUNE_AT = 1024


def _never(client_id: str) -> bool:
    return False


@dataclass(slots=True)
class _ClientLine:
    """One client's requests inside the coordinator: running, and waiting their turn."""

    running: int = 0
    waiting: deque[asyncio.Future[None]] = field(default_factory=deque)


class ClientAdmission:
    """At most ``max_running`` requests per client in flight, ``max_waiting`` more queued.

    A client's backlog waits on itself: past the queue it is refused at once,
    so no client can fill the coordinator with its own requests. With ``share``
    below 1, the client's requests are also paced while ``contended(client)``
    (see the module docstring).
    """

    def __init__(
        self,
        max_running: int,
        max_waiting: int,
        *,
        share: float = 1.0,
        free_s: float = 0.0,
        contended: Callable[[str], bool] = _never,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_running < 1 or max_waiting < 0:
            raise ValueError("max_running must be >= 1 and max_waiting >= 0")
        if not 0.0 < share <= 1.0 or free_s < 0:
            raise ValueError("share must be in (0, 1] and free_s >= 0")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.share = share
        self.free_s = free_s
        self.contended = contended
        self._clock = clock
        self._lines: dict[str, _ClientLine] = {}
        # Clients resting after a paced request with none of theirs waiting: until when.
        self._resting: dict[str, float] = {}

    def running(self, client_id: str) -> int:
        line = self._lines.get(client_id)
        return 0 if line is None else line.running

    def rest_after(self, client_id: str, busy_s: float) -> float:
        """How long the client rests after a request that kept it busy ``busy_s``."""
        if self.share >= 1.0 or busy_s <= self.free_s or not self.contended(client_id):
            return 0.0
        return min((busy_s - self.free_s) * (1.0 / self.share - 1.0), MAX_REST_S)

    async def enter(self, client_id: str) -> bool:
        """Take a running slot (waiting for one if the queue has room); False when full."""
        until = self._resting.get(client_id)
        if until is not None:
            wait = until - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._resting.pop(client_id, None)
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
                self._pass_on(client_id)
            else:
                # _pass_on() may already have dropped our cancelled turn from the line
                with suppress(ValueError):
                    line.waiting.remove(turn)
            raise
        return True

    def leave(self, client_id: str, busy_s: float = 0.0) -> None:
        """Give the slot to the client's next waiting request, or free it.

        ``busy_s``: how long the request kept the service busy; when the client is
        paced, the slot passes on only after the client's rest.
        """
        rest = self.rest_after(client_id, busy_s)
        if rest > 0:
            if self._lines[client_id].waiting:
                # The slot stays taken while the client rests, then moves to its next.
                asyncio.get_running_loop().call_later(rest, self._pass_on, client_id)
                return
            if len(self._resting) >= _PRUNE_AT:
                now = self._clock()
                self._resting = {c: t for c, t in self._resting.items() if t > now}
            self._resting[client_id] = self._clock() + rest
        self._pass_on(client_id)

    def _pass_on(self, client_id: str) -> None:
        line = self._lines[client_id]
        while line.waiting:
            turn = line.waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot moves to it; running stays the same
                return
        line.running -= 1
        if line.running == 0:
            del self._lines[client_id]
