"""The floor of the query path's hops: a bare relay with the server's stack, no search.

What does VectorPanda's shape cost before any of its own work? A client's HTTP request
goes to one process (uvicorn's httptools protocol on uvloop, as the coordinator), which
writes the body as a binary WebSocket message to a second process (websockets on uvloop,
dialled in as a worker dials the hub, with the same direct-callback reading and
one-call writing as ``workers/direct_socket.py``); that process answers a fixed
300-byte message as soon as its read callback has returned (as the worker answers
its queued queries), and the first answers the client with it (or 504 if none
came within 10 s). No authentication, routing, rate limit, metering, request log,
frame header or search: every CPU microsecond measured here is the hops' (system
calls, wake-ups, the HTTP and WebSocket parsers, the event loops), which the real
server pays too.

Measured by ``python -m benchmarks.cpu_split --wire raw floor``: the same raw socket
client against the real server and against this relay, each process's CPU per query
from ``/proc``.

    .venv/bin/python -m benchmarks.hop_floor --role relay   # (started by running_floor)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve

from workers.direct_socket import DirectBinary, write_now

ANSWER_BYTES = 300  # about a binary top-10 answer
ANSWER_TIMEOUT_S = 10.0


class _RelaySide(DirectBinary, ServerConnection):
    pass


class _EchoSide(DirectBinary, ClientConnection):
    pass


class Relay:
    """The HTTP side: each request's body goes to the echo process, its answer back."""

    def __init__(self) -> None:
        self.socket: _RelaySide | None = None
        self.connected = asyncio.Event()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0

    async def hub(self, socket: ServerConnection) -> None:
        assert isinstance(socket, _RelaySide)
        if self.socket is not None:  # only the echo process it started may dial in
            print(f"refused a second hub connection from {socket.remote_address}", file=sys.stderr)
            await socket.close()
            return
        socket.on_binary = self._answered
        self.socket = socket
        self.connected.set()
        await socket.wait_closed()

    def _answered(self, raw: bytes) -> None:
        future = self.pending.pop(int.from_bytes(raw[:8], "little"), None)
        if future is not None and not future.done():
            future.set_result(raw[8:])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        assert self.socket is not None
        rid = self.next_id = self.next_id + 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        frame = rid.to_bytes(8, "little") + b"".join(chunks)
        if not write_now(self.socket, (frame,)):
            await self.socket.send(frame)
        try:
            answer = await asyncio.wait_for(future, ANSWER_TIMEOUT_S)
        except TimeoutError:  # lost: the client gets an error, not a hang
            self.pending.pop(rid, None)
            await send({"type": "http.response.start", "status": 504, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [
            (b"content-type", b"application/x-vectorpanda"),
            (b"content-length", str(len(answer)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


async def _relay() -> None:
    relay = Relay()
    hub = await serve(relay.hub, "127.0.0.1", 0, compression=None, create_connection=_RelaySide)
    hub_port = next(iter(hub.sockets)).getsockname()[1]
    listener = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        relay, http="httptools", lifespan="off", access_log=False, log_level="warning"
    )
    serving = asyncio.ensure_future(uvicorn.Server(config).serve(sockets=[listener]))
    print(f"PORTS {listener.getsockname()[1]} {hub_port}", flush=True)
    await relay.connected.wait()  # running_floor starts the echo process
    print("READY", flush=True)
    await serving


async def _echo(port: int) -> None:
    answer = b"a" * ANSWER_BYTES
    loop = asyncio.get_running_loop()
    waiting: list[bytes] = []
    sending: set[asyncio.Future[None]] = set()
    async with connect(
        f"ws://127.0.0.1:{port}", compression=None, create_connection=_EchoSide
    ) as socket:
        assert isinstance(socket, _EchoSide)

        def flush() -> None:
            # As the worker answers: after the read callback, all waiting answers at once.
            # (Answering inside the callback lost an answer now and then in cpu_split
            # runs, cause not found: docs/performance.md, 2026-12-03 afternoon.)
            frames = [rid + answer for rid in waiting]
            waiting.clear()
            if not write_now(socket, frames):
                task = asyncio.ensure_future(_send_each(socket, frames))
                sending.add(task)
                task.add_done_callback(sending.discard)

        def received(raw: bytes) -> None:
            if not waiting:
                loop.call_soon(flush)
            waiting.append(raw[:8])

        socket.on_binary = received
        await socket.wait_closed()


async def _send_each(socket: _EchoSide, frames: list[bytes]) -> None:
    for frame in frames:
        await socket.send(frame)


@contextlib.contextmanager
def running_floor() -> Iterator[tuple[str, int, int]]:
    """Start the relay and its echo process: (url, relay pid, echo pid)."""
    command = [sys.executable, "-m", "benchmarks.hop_floor", "--role"]
    relay = subprocess.Popen([*command, "relay"], stdout=subprocess.PIPE, text=True)
    echo: subprocess.Popen[bytes] | None = None
    try:
        assert relay.stdout is not None
        ports = relay.stdout.readline().split()
        if len(ports) != 3 or ports[0] != "PORTS":
            raise RuntimeError("the floor relay did not start")
        echo = subprocess.Popen([*command, "echo", "--port", ports[2]])
        if relay.stdout.readline().strip() != "READY":
            raise RuntimeError("the echo process did not dial the floor relay")
        yield f"http://127.0.0.1:{ports[1]}", relay.pid, echo.pid
    finally:
        for proc in (echo, relay):
            if proc is not None:
                proc.kill()  # uvicorn would wait for the client's open connections
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["relay", "echo"], required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(_relay() if args.role == "relay" else _echo(args.port))


if __name__ == "__main__":
    main()
