"""Long Python work in a worker's request threads gives the interpreter lock away often.

A worker's event loop answers every tenant's quick queries, heartbeats and frames, and
uvloop takes the interpreter lock afresh for each of its callbacks. While a request
thread compiled a 50,000-operand filter (decoding its pieces, building its sets: C
calls of at most 0.6 ms each), the loop's wake-ups waited 5 ms at the 99th percentile
(6-7 ms at worst), whatever the switch interval (0.1-1 ms): the forced switch after
an interval did not keep up with a thread going from one short C call to the next.
Sleeping briefly between the steps hands the lock over at once: the loop's wait fell
to 0.8-1 ms at the 99th percentile (1-1.6 ms at worst), measured with a uvloop ticker
beside a thread compiling such filters 30 % of the time. Work pauses only after a
turn (TURN_S) of it, so short work is not slowed; a pause costs its thread wall
time, no CPU.
"""

from __future__ import annotations

import time

# Long enough that the waiting thread is running before this one asks for the lock
# again (a zero sleep often took it straight back); short beside a turn.
PAUSE_S = 0.00005
# A thread pauses after at least this much work since its last pause (or its start),
# so short work (a filter of a few thousand operands, a scan of a few hundred rows)
# never pauses at all.
TURN_S = 0.0005


class Turns:
    """One piece of long work: ``step()`` between its steps pauses once a turn is up."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = time.perf_counter()

    def step(self) -> None:
        """Let any thread waiting for the interpreter lock (the event loop) run, if this
        work has held it for a turn."""
        if time.perf_counter() - self._since >= TURN_S:
            _pause()
            self._since = time.perf_counter()


def _pause() -> None:
    time.sleep(PAUSE_S)
