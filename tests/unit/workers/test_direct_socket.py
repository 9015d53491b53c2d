"""Messages written at once on the coordinator-worker socket (workers/direct_socket.py):
several in one system call, each arriving whole and in order; a closing socket's end
of stream still goes websockets' own way.

A real WebSocket over loopback, both ends the classes the hub and the worker use, on
uvloop as the servers run; the write system calls are this process's own count
(``/proc/self/io``: libuv writes with write/writev, which it counts). Each test runs
its own uvloop loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve

from workers.direct_socket import DirectBinary, write_now


class _Receiving(DirectBinary, ServerConnection):
    pass


class _Sending(DirectBinary, ClientConnection):
    pass


def _write_calls() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/self/io")


class _Ends:
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self.expected = 0
        self.connected: asyncio.Future[ServerConnection] = (
            asyncio.get_running_loop().create_future()
        )

    async def handler(self, ws: ServerConnection) -> None:
        def on_binary(data: bytes) -> None:
            self.got.append(data)
            if len(self.got) >= self.expected:
                self.arrived.set()

        ws.on_binary = on_binary  # type: ignore[attr-defined]
        self.connected.set_result(ws)
        await ws.wait_closed()
        self.closed.set()


@contextlib.asynccontextmanager
async def _connected() -> AsyncIterator[tuple[_Ends, ClientConnection]]:
    state = _Ends()
    server: Server = await serve(state.handler, "127.0.0.1", 0, create_connection=_Receiving)
    port = next(iter(server.sockets)).getsockname()[1]
    client = await connect(f"ws://127.0.0.1:{port}", create_connection=_Sending)
    try:
        yield state, client
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_several_messages_go_out_in_one_write_whole_and_in_order() -> None:
    uvloop.run(_test_several_messages_go_out_in_one_write_whole_and_in_order())


async def _test_several_messages_go_out_in_one_write_whole_and_in_order() -> None:
    async with _connected() as (state, client):
        messages = [bytes([i]) * (100 + 37 * i) for i in range(8)]
        state.expected = len(messages)
        before = _write_calls()
        assert write_now(client, messages)
        assert _write_calls() - before == 1
        await asyncio.wait_for(state.arrived.wait(), 10)
        assert state.got == messages


def test_one_message_and_then_more_are_written_alike() -> None:
    uvloop.run(_test_one_message_and_then_more_are_written_alike())


async def _test_one_message_and_then_more_are_written_alike() -> None:
    async with _connected() as (state, client):
        state.expected = 4
        assert write_now(client, [b"first"])
        assert write_now(client, [b"second", b"third"])
        client.protocol.send_binary(b"fourth")
        client.send_data()
        await asyncio.wait_for(state.arrived.wait(), 10)
        assert state.got == [b"first", b"second", b"third", b"fourth"]


def test_a_queued_end_of_stream_still_closes_the_socket() -> None:
    """The hub's end (the server) failing a connection queues a close frame and its end
    of stream together: the worker's end must see the socket closed, not wait for it."""
    uvloop.run(_test_a_queued_end_of_stream_still_closes_the_socket())


async def _test_a_queued_end_of_stream_still_closes_the_socket() -> None:
    async with _connected() as (state, client):
        got: list[bytes] = []
        client.on_binary = got.append  # type: ignore[attr-defined]
        server_end = await asyncio.wait_for(state.connected, 5)
        server_end.protocol.send_binary(b"last")
        server_end.protocol.fail(1011, "going away")  # a close frame, then the end of stream
        assert len(server_end.protocol.writes) == 3
        server_end.send_data()
        await asyncio.wait_for(client.wait_closed(), 5)
        assert got == [b"last"]
