"""How long one request may work, and whether the coordinator has given up on it.

The coordinator puts its remaining deadline in every data frame (``deadline_ms``) and
sends CANCEL when it answers the client without the worker (timeout, disconnect). The
long loops of a request (filter evaluation over rows, batches of FAISS searches) call
``check`` between chunks, so abandoned work stops within one chunk instead of running
to the end while the worker's other tenants wait.
"""

from __future__ import annotations

import time
from typing import Any

from workers.errors import StoreError
from workers.protocol import ErrorCode

# A frame without a deadline (older coordinator, tests) still cannot run forever.
DEFAULT_DEADLINE_S = 60.0
MAX_DEADLINE_S = 3600.0


class WorkBudget:
    """A request's deadline, its cancellation flag and the rows it has examined.

    Written by the event loop (``cancel``) and read by the request's thread; a plain
    bool is enough because the reader only needs to see the change eventually.
    """

    __slots__ = ("cancelled", "cost", "deadline")

    def __init__(self, seconds: float = DEFAULT_DEADLINE_S) -> None:
        self.deadline = time.monotonic() + seconds
        self.cancelled = False
        self.cost = 0

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> WorkBudget:
        """The budget a frame's ``deadline_ms`` allows (relative, so clocks need not agree)."""
        value = header.get("deadline_ms")
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
            return cls(min(max(float(value) / 1000.0, 0.0), MAX_DEADLINE_S))
        return cls()

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def expired(self) -> bool:
        return self.cancelled or time.monotonic() >= self.deadline

    def check(self) -> None:
        """Stop the request (an UNAVAILABLE reply nobody waits for) if it was abandoned."""
        if self.cancelled:
            raise StoreError(ErrorCode.UNAVAILABLE, "the request was cancelled")
        if time.monotonic() >= self.deadline:
            raise StoreError(
                ErrorCode.UNAVAILABLE, "the request deadline passed before the work finished"
            )

    def spend(self, rows: int) -> None:
        """Count ``rows`` examined, for the cost the reply reports to the coordinator."""
        self.cost += rows


def unbounded() -> WorkBudget:
    """A budget for work that is not a client request (tests, maintenance)."""
    return WorkBudget(MAX_DEADLINE_S)
