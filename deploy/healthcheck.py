"""Container healthchecks for docker-compose.yml (stdlib only; exit 0 healthy, 1 not).

python deploy/healthcheck.py http <url>      # the URL answers 2xx
python deploy/healthcheck.py tcp <port>      # this container holds an ESTABLISHED
                                             # TCP connection to <port> (a worker to
                                             # the hub, a consumer to RabbitMQ)
"""

from __future__ import annotations

import sys
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


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        return 0 if http_ok(argv[1]) else 1
    if len(argv) == 2 and argv[0] == "tcp":
        return 0 if connected_to(int(argv[1])) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
