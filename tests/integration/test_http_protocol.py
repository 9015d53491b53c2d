"""The coordinator's HTTP protocol (vectorpanda/server/http_protocol.py) on a real socket.

It holds a response's head until the body's first write; every kind of exchange a
client can make must still be answered whole and in order: keep-alive, HEAD (no body
is ever written), ``Expect: 100-continue`` (the client waits for that line before its
body), pipelined requests, and a streamed body whose parts come apart in time.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vectorpanda.server.coordinator import quiet_server
from vectorpanda.server.http_protocol import HeldHeadTransport

pytestmark = pytest.mark.integration


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"echo:" + body if body else b"path:" + scope["path"].encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = quiet_server(app, host="127.0.0.1", port=0)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await serving


def read_answer(sock: socket.socket, buffer: bytearray, head_only: bool = False) -> bytes:
    """One whole answer (head and body) from ``sock``; what follows stays in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    lines = head.lower().split(b"\r\n")
    length = next((int(x.split(b":")[1]) for x in lines if x.startswith(b"content-length:")), 0)
    if b"transfer-encoding: chunked" in lines:
        while not buffer.endswith(b"0\r\n\r\n"):
            buffer += sock.recv(65536)
        length = len(buffer) - end
    if head_only:
        length = 0
    while len(buffer) < end + length:
        buffer += sock.recv(65536)
    answer = bytes(buffer[: end + length])
    del buffer[: end + length]
    return answer


def exchange(port: int, *requests: bytes, head_only: bool = False) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        buffer = bytearray()
        answers = []
        for request in requests:
            sock.sendall(request)
            answers.append(read_answer(sock, buffer, head_only))
        return answers


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


async def test_keep_alive_answers_each_request_whole(port: int) -> None:
    answers = await asyncio.to_thread(exchange, port, get("/a"), get("/bb"), get("/ccc"))
    assert [a.split(b"\r\n\r\n")[1] for a in answers] == [b"path:/a", b"path:/bb", b"path:/ccc"]
    assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") for a in answers)


async def test_a_head_request_gets_its_head(port: int) -> None:
    # No body is written for HEAD: the head must go out when the response ends.
    answers = await asyncio.to_thread(
        exchange, port, get("/x", "HEAD"), get("/x", "HEAD"), head_only=True
    )
    assert all(a.startswith(b"HTTP/1.1 200 OK\r\n") for a in answers)
    assert all(b"content-length: 7\r\n" in a for a in answers)


async def test_expect_100_continue_is_answered_before_the_body_is_sent(port: int) -> None:
    def talk() -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = sock.recv(65536)  # times out (a failure) if the line is held
            sock.sendall(b"hello")
            buffer = bytearray()
            return interim, read_answer(sock, buffer)

    interim, answer = await asyncio.to_thread(talk)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"echo:hello")


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    def talk() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(get("/1") + get("/2") + get("/3"))
            buffer = bytearray()
            return [read_answer(sock, buffer) for _ in range(3)]

    answers = await asyncio.to_thread(talk)
    assert [a.split(b"\r\n\r\n")[1] for a in answers] == [b"path:/1", b"path:/2", b"path:/3"]


async def test_a_streamed_body_arrives_whole(port: int) -> None:
    answers = await asyncio.to_thread(exchange, port, get("/stream"), get("/after"))
    assert answers[0].startswith(b"HTTP/1.1 200 OK\r\n")
    body = answers[0].split(b"\r\n\r\n", 1)[1]
    assert b"one," in body and b"two," in body and body.endswith(b"three\r\n0\r\n\r\n")
    assert answers[1].endswith(b"path:/after")


class _Recorded:
    """A transport that records each write (one write: one system call)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.gone = False

    def is_closing(self) -> bool:
        return self.closed or self.gone

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.writes.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True


def test_head_and_body_leave_in_one_write() -> None:
    recorded = _Recorded()
    transport = HeldHeadTransport(recorded)  # type: ignore[arg-type]
    transport.hold = True
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert recorded.writes == []
    transport.write(b"body")
    transport.write(b"more")  # past the head, writes go out as they come
    assert recorded.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
    transport.hold = True
    transport.write(b"HEAD-ONLY\r\n\r\n")
    transport.close()  # closing writes what is held first
    assert recorded.writes[-1] == b"HEAD-ONLY\r\n\r\n" and recorded.closed


def test_a_held_head_is_dropped_when_the_client_has_gone() -> None:
    recorded = _Recorded()
    transport = HeldHeadTransport(recorded)  # type: ignore[arg-type]
    transport.hold = True
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    recorded.gone = True  # the connection was lost before the body
    transport.close()  # as uvicorn's connection_lost does: no write to a closed socket
    assert recorded.writes == [] and recorded.closed
