"""The floor under a refused request: uvicorn, as the coordinator builds it, answering 429.

    .venv/bin/python -m benchmarks.refusal_floor --port 8123 [--processes 2]

A bare ASGI app that answers every request with a small JSON 429 (precomputed
bytes), served by ``vectorpanda.server.coordinator.quiet_server`` on uvloop with
httptools, as ``vectorpanda up`` serves the API; with ``--processes N``, N
processes share the port (``SO_REUSEPORT``) as VP_COORDINATOR_PROCESSES does.
``benchmarks/flood.py`` floods it with the same ``wrk`` as the coordinator, so the
two CPU figures per request are comparable: the difference is what the
coordinator's own refusal costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal

import uvloop

from vectorpanda.server.coordinator import quiet_server
from vectorpanda.server.group import _reuse_port_socket

BODY = (
    b'{"error":{"code":"rate_limited","message":"Over the free tier\'s rate.",'
    b'"request_id":"0123456789abcdef0123456789abcdef"}}'
)
START = {
    "type": "http.response.start",
    "status": 429,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"retry-after", b"1"),
    ],
}
END = {"type": "http.response.body", "body": BODY}


async def refuse(scope, receive, send):  # type: ignore[no-untyped-def]
    await send(START)
    await send(END)


def serve(host: str, port: int) -> None:
    sock = _reuse_port_socket(host, port)
    server = quiet_server(refuse)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    uvloop.run(server.serve(sockets=[sock]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--processes", type=int, default=1)
    args = p.parse_args()
    if args.processes == 1:
        serve(args.host, args.port)
        return
    children = [
        multiprocessing.Process(target=serve, args=(args.host, args.port))
        for _ in range(args.processes)
    ]
    for child in children:
        child.start()
    signal.signal(
        signal.SIGTERM, lambda *_: [os.kill(c.pid or 0, signal.SIGTERM) for c in children]
    )
    for child in children:
        child.join()


if __name__ == "__main__":
    main()
