"""Where a host's coordinator processes meet on disk: the files under ``<data>/run``.

Both the supervisor (group.py) and each coordinator process (coordinator.py) name
these paths, so they are named here once; neither module imports the other's.
"""

from __future__ import annotations

import socket
from pathlib import Path

from coordinator.shared_limits import table_path
from vectorpanda.control_db import database_url
from vectorpanda.settings import Settings

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "run"


def this_host() -> str | None:
    """The running kernel's boot id: the same in every container of one host, different on
    any other host (None where the kernel does not tell)."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def this_host_or_name() -> str:
    return this_host() or socket.gethostname()


def rate_limit_table(settings: Settings) -> Path:
    """The rate-limit table this host's coordinator processes share; on PostgreSQL, where
    a group may span hosts, one per host (coordinator/shared_limits.py)."""
    host = this_host_or_name() if database_url(settings) is not None else None
    return table_path(run_dir(settings), host)


def coherence_board(settings: Settings) -> Path:
    return run_dir(settings) / "coherence"
