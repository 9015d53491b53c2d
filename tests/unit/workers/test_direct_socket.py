"""Messages written at once on the coordinator-worker socket (workers/direct_socket.py):
several in one system call, each arriving whole and in order; a closing socket's end
of stream still goes websockets' own way; each frame is the bytes websockets would
write (the client's end masked with keys read a thousand at a time).

A real WebSocket over loopback, both ends the classes the hub and the worker use, on
uvloop as the servers run; the write system calls are this process's own count
(``/proc/self/io``: libuv writes with write/writev, which it counts). Each test runs
its own uvloop loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from websockets import frames
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.protocol import CLIENT, SERVER, Protocol, Side

from workers import direct_socket
from workers.direct_socket import (
    MASK_BYTES,
    MASKS_PER_READ,
    DirectBinary,
    binary_frame,
    write_now,
)


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
    # no compression, as the hub and the worker (coordinator/hub.py, workers/main.py)
    server: Server = await serve(
        state.handler, "127.0.0.1", 0, compression=None, create_connection=_Receiving
    )
    port = next(iter(server.sockets)).getsockname()[1]
    client = await connect(f"ws://127.0.0.1:{port}", compression=None, create_connection=_Sending)
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


def _bare(side: Side) -> DirectBinary:
    """A socket object with only its protocol: what binary_frame reads."""
    socket = DirectBinary.__new__(DirectBinary)
    setattr(socket, "protocol", Protocol(side))  # noqa: B010 (no socket behind it)
    return socket


# Lengths on both sides of each of RFC 6455's three length encodings.
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70_000]


@pytest.mark.parametrize("side", [CLIENT, SERVER])
@pytest.mark.parametrize("size", SIZES)
def test_frames_are_websockets_own_bytes(
    side: Side, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """binary_frame writes what websockets' Frame.serialize writes for that end, given
    the same masking key (the client's end masks, the server's does not)."""
    socket = _bare(side)
    message = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ours = binary_frame(socket, message)
    mask = ours[len(ours) - size - 4 : len(ours) - size] if side is CLIENT else b""
    monkeypatch.setattr(frames.secrets, "token_bytes", lambda n: mask)
    theirs = WireFrame(Opcode.BINARY, message).serialize(mask=side is CLIENT, extensions=[])
    assert ours == theirs


def test_masking_keys_are_random_and_read_a_thousand_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        reads.append(n)
        return real(n)

    socket = _bare(CLIENT)
    monkeypatch.setattr(direct_socket.os, "urandom", urandom)
    keys = [binary_frame(socket, b"m")[2:6] for _ in range(MASKS_PER_READ + 1)]
    assert reads == [MASK_BYTES * MASKS_PER_READ] * 2
    assert len(set(keys)) > MASKS_PER_READ // 2  # 4 random bytes: repeats are rare


def test_frames_of_every_length_arrive_whole_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    uvloop.run(_test_frames_of_every_length_arrive_whole_both_ways(monkeypatch))


async def _test_frames_of_every_length_arrive_whole_both_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with _connected() as (state, client):
        messages = [bytes([i % 251]) * size for i, size in enumerate(SIZES)]
        state.expected = len(messages)

        def serialize(*args: object, **kwargs: object) -> bytes:
            raise AssertionError("a frame serialized by websockets, not binary_frame")

        with monkeypatch.context() as patched:
            patched.setattr(WireFrame, "serialize", serialize)
            assert write_now(client, messages)  # masked: the server end unmasks, checks
        await asyncio.wait_for(state.arrived.wait(), 10)
        assert state.got == messages
        got: list[bytes] = []
        arrived = asyncio.Event()

        def on_binary(data: bytes) -> None:
            got.append(data)
            if len(got) == len(messages):
                arrived.set()

        client.on_binary = on_binary  # type: ignore[attr-defined]
        server_end = await asyncio.wait_for(state.connected, 5)
        with monkeypatch.context() as patched:
            patched.setattr(WireFrame, "serialize", serialize)
            assert write_now(server_end, messages)  # unmasked, as a server's must be
        await asyncio.wait_for(arrived.wait(), 10)
        assert got == messages
