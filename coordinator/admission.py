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
import mmap
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

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


class RecentClients:
    """The clients served in the last ``window_s`` seconds, as far as pacing needs:
    whether one other than a given client was (the two most recent are enough)."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._recent: list[tuple[str, float]] = []  # distinct clients, latest first

    def seen(self, client_id: str) -> None:
        now = self._clock()
        recent = self._recent
        if recent and recent[0][0] == client_id:
            recent[0] = (client_id, now)
        else:
            self._recent = [(client_id, now), *recent[:1]]

    def others(self, client_id: str) -> bool:
        """Whether a client other than ``client_id`` was served within the window."""
        for other, seen in self._recent:
            if other != client_id:
                return self._clock() - seen < self.window_s
        return False


_BOARD = struct.Struct("<" + "Qd" * 64)  # 64 slots: client hash, last seen (monotonic s)
_BOARD_SLOTS = 64
_SLOT = struct.Struct("<Qd")


class SharedRecentClients(RecentClients):
    """``RecentClients`` across the coordinator processes of one machine.

    A board of 64 slots in a memory-mapped file: a client's slot is its hash modulo 64,
    holding its hash and when it was last served (the monotonic clock is the machine's).
    Writes take no lock: the board is a hint (two clients sharing a slot, or a torn
    write, at worst pace or spare one request), and a stale board from an earlier
    boot holds times that have passed or lie ahead, both ignored.
    """

    def __init__(
        self, path: Path, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(window_s, clock)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _BOARD.size:
            os.ftruncate(self._fd, _BOARD.size)
        self._map = mmap.mmap(self._fd, _BOARD.size)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    @staticmethod
    def _hash(client_id: str) -> int:
        return xxhash.xxh3_64_intdigest(client_id.encode()) | 1  # 0 marks a free slot

    def seen(self, client_id: str) -> None:
        key = self._hash(client_id)
        _SLOT.pack_into(self._map, (key % _BOARD_SLOTS) * _SLOT.size, key, self._clock())

    def others(self, client_id: str) -> bool:
        key, now = self._hash(client_id), self._clock()
        board = _BOARD.unpack_from(self._map)
        return any(
            board[i] not in (0, key) and 0 <= now - board[i + 1] < self.window_s
            for i in range(0, len(board), 2)
        )
