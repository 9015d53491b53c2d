"""Container healthchecks for docker-compose.yml (stdlib only; exit 0 healthy, 1 not).

python deploy/healthcheck.py http <url>      # the URL answers 2xx
python deploy/healthcheck.py tcp <port>      # this container holds an ESTABLISHED
                                             # TCP connection to <port> (a worker to
                                             # the hub, a consumer to RabbitMQ)
python deploy/healthcheck.py alive <file> <max_age_s>
                                             # the worker touched <file> (holding its
                                             # pid) within max_age_s; if not, the
                                             # worker is frozen: SIGKILL it, so the
                                             # container exits and is restarted
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

_ESTABLISHED = "01"


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - fixed internal URL
            return 200 <= int(r.status) < 300
    except OSError:
        return False


def connected_to(port: int, proc_net: Path = Path("/proc/net")) -> bool:
    """True if some socket of this network namespace is ESTABLISHED to ``port``."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == _ESTABLISHED:
                return True
    return False


def alive(path: Path, max_age_s: float) -> bool:
    """True if ``path`` is fresh; a stale one means a frozen worker, which is killed.

    Docker marks a container unhealthy but does not restart it, and a frozen worker
    still holds its tenants' locks: the check itself fences it. The worker is not
    PID 1 (compose runs it under ``init: true``), so the signal is delivered, and
    its exit ends the container, which the restart policy starts again.
    """
    try:
        age = time.time() - path.stat().st_mtime
        pid = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False  # not started yet (start_period) or unreadable: unhealthy, no kill
    if age <= max_age_s:
        return True
    print(f"worker pid {pid} silent for {age:.1f}s: killing it", file=sys.stderr)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError as exc:
        print(f"could not kill pid {pid}: {exc}", file=sys.stderr)
    return False


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        # Comma-separated: healthy while any of them answers (several coordinators).
        return 0 if any(http_ok(url) for url in argv[1].split(",") if url) else 1
    if len(argv) == 2 and argv[0] == "tcp":
        return 0 if connected_to(int(argv[1])) else 1
    if len(argv) == 3 and argv[0] == "alive":
        return 0 if alive(Path(argv[1]), float(argv[2])) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
