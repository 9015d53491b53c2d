"""Named points between durable steps where a crash test can SIGKILL this process.

``VP_TEST_CRASH_AT=<name>`` in a test child's environment makes the process kill itself
(SIGKILL, nothing flushed or cleaned up) the first time it reaches that point. Unset,
as always outside the crash tests, a point is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "VP_TEST_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, at once, if the crash tests asked for this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
