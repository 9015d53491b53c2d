"""The SDK's lean transports (``Pool``, the Client's own, and ``LeanTransport`` for
httpx) against a real socket server: framing, keep-alive, failures."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.loopback_http import LoopbackListener, read_message
from vectorpanda_client import NO_RETRIES, Client, ConnectionFailed
from vectorpanda_client.transport import LeanTransport, Pool

Reply = Callable[[bytes], bytes | None]


class Server(LoopbackListener):
    """Answers each request read from a connection with ``reply(request)``; None closes it."""

    def __init__(self, reply: Reply, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.reply = reply
        self.tls = tls
        self.requests: list[bytes] = []
        self.close_after_answer = False  # close while the client thinks it kept the connection
        self.start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                return  # the client refused our certificate
        with conn:
            while True:
                got = read_message(conn, buffer)
                if got is None:
                    return
                request, buffer = got
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    return
                conn.sendall(answer)
                if b"Connection: close" in answer or self.close_after_answer:
                    return

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, transport=LeanTransport(), timeout=5)


def test_content_length_answers_reuse_one_connection_and_send_one_request_each(
    serve: Callable[[Reply], Server],
) -> None:
    server = serve(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
    with _client(server) as http:
        for i in range(5):
            r = http.post("/v1/x?q=1", content=b"body%d" % i, headers={"Content-Type": "a/b"})
            assert r.status_code == 200 and r.content == b"hello" and r.headers["x-a"] == "b"
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0]
    assert first.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n") and first.endswith(b"\r\n\r\nbody0")
    assert b"content-type: a/b" in first.lower() and b"host: 127.0.0.1" in first.lower()


def test_chunked_and_close_delimited_bodies(serve: Callable[[Reply], Server]) -> None:
    chunked = serve(
        lambda r: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: 1\r\n\r\n"
        )
    )
    with _client(chunked) as http:
        assert http.get("/").content == b"abcdefg"
        assert http.get("/").content == b"abcdefg"
    assert chunked.connections == 1

    # neither a length nor chunks: the body runs until the server closes
    closing = serve(lambda r: b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnot here")
    with _client(closing) as http:
        for _ in range(2):
            r = http.get("/")
            assert r.status_code == 404 and r.content == b"not here"
    assert closing.connections == 2


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[[Reply], Server],
) -> None:
    server = serve(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    server.close_after_answer = True
    with _client(server) as http:
        assert http.get("/").content == b"ok"
        threading.Event().wait(0.2)  # the server's close reaches us
        assert http.get("/").content == b"ok"
    assert server.connections == 2


def test_failures_are_httpx_errors_saying_whether_anything_was_sent(
    serve: Callable[[Reply], Server],
) -> None:
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    with (
        httpx.Client(transport=LeanTransport(), timeout=2) as http,
        pytest.raises(httpx.ConnectError),
    ):
        http.get(f"http://127.0.0.1:{port}/")
    silent = serve(lambda r: None)
    with _client(silent) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get("/")
    garbage = serve(lambda r: b"NOT HTTP\r\n\r\n")
    with _client(garbage) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get("/")
    slow = serve(lambda r: (threading.Event().wait(1.0), b"")[1] or None)
    with (
        httpx.Client(base_url=slow.url, transport=LeanTransport(), timeout=0.2) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/")


# --- the Client's own path: transport.Pool (no httpx Request/Response) -------------------

USAGE = (
    b'{"client_id":"c","tier":"free","status":"active","collections":0,"vectors":0,'
    b'"bytes":0,"limits":{}}'
)
KEY = "vp_0123456789abcdef_" + "s" * 43


def _json_answer(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"".join(extra)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_client_requests_carry_prefix_host_key_and_length_on_one_connection(
    serve: Callable[[Reply], Server],
) -> None:
    server = serve(
        lambda r: _json_answer(USAGE) if r.startswith(b"GET") else _json_answer(b'{"count":3}')
    )
    with Client(server.url + "/base/", KEY) as client:
        assert client.usage().tier == "free"
        assert client.collection("a b").count() == 3
        assert client.usage().tier == "free"
    assert server.connections == 1 and len(server.requests) == 3
    get, post = server.requests[0], server.requests[1]
    assert get.startswith(b"GET /base/v1/usage HTTP/1.1\r\n") and get.endswith(b"\r\n\r\n")
    assert b"content-length" not in get.lower()
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in get
    assert f"Authorization: Bearer {KEY}\r\n".encode() in get
    assert post.startswith(b"POST /base/v1/collections/a%20b/count HTTP/1.1\r\n")
    assert b"Content-Length: 2\r\n" in post and post.endswith(b"\r\n\r\n{}")


def test_client_reads_chunked_and_honours_connection_close(
    serve: Callable[[Reply], Server],
) -> None:
    half = len(USAGE) // 2
    chunked = serve(
        lambda r: (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % half + USAGE[:half] + b"\r\n"
            + b"%x\r\n" % (len(USAGE) - half) + USAGE[half:] + b"\r\n0\r\n\r\n"
        )
    )  # fmt: skip
    with Client(chunked.url, KEY) as client:
        assert client.usage().tier == "free" and client.usage().tier == "free"
    assert chunked.connections == 1
    closing = serve(lambda r: _json_answer(USAGE, b"Connection: close\r\n"))
    with Client(closing.url, KEY, retry=NO_RETRIES) as client:
        assert client.usage().tier == "free" and client.usage().tier == "free"
    assert closing.connections == 2


def test_client_skips_interim_answers(serve: Callable[[Reply], Server]) -> None:
    server = serve(lambda r: b"HTTP/1.1 100 Continue\r\n\r\n" + _json_answer(USAGE))
    with Client(server.url, KEY) as client:
        assert client.usage().tier == "free" and client.usage().tier == "free"
    assert server.connections == 1


def test_client_maps_timeouts_and_broken_answers_to_connection_failed(
    serve: Callable[[Reply], Server],
) -> None:
    slow = serve(lambda r: (threading.Event().wait(1.0), None)[1])
    with (
        Client(slow.url, KEY, timeout=0.2, retry=NO_RETRIES) as client,
        pytest.raises(ConnectionFailed, match="ReadTimeout") as timed_out,
    ):
        client.usage()
    assert timed_out.value.sent is True
    truncated = serve(lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort")
    truncated.close_after_answer = True
    with (
        Client(truncated.url, KEY, retry=NO_RETRIES) as client,
        pytest.raises(ConnectionFailed, match="RemoteProtocolError") as cut,
    ):
        client.usage()
    assert cut.value.sent is True


def test_pool_refuses_urls_it_cannot_reach() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        Pool("ftp://example.invalid", {"Content-Type": "a", "Accept": "b"}, 1.0, True)


def test_client_over_tls_keeps_the_connection_and_checks_the_certificate(
    tmp_path: Path,
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Server(lambda r: _json_answer(USAGE), tls=context)
    try:
        with Client(server.url, KEY, verify=str(cert)) as client:
            for _ in range(3):
                assert client.usage().tier == "free"
        assert server.connections == 1 and len(server.requests) == 3
        with (
            Client(server.url, KEY, verify=True, retry=NO_RETRIES) as client,
            pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED") as refused,
        ):
            client.usage()
        assert refused.value.sent is False  # the request never left
    finally:
        server.close()


def test_an_answer_sent_before_the_body_was_read_is_returned(
    serve: Callable[[Reply], Server],
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answer = b'{"error":{"code":"payload_too_large","message":"over","request_id":"r9"}}'

    def refuse_early() -> None:
        conn, _ = listener.accept()
        with conn:
            while b"\r\n\r\n" not in conn.recv(65536):
                pass
            conn.sendall(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
            )
            conn.shutdown(socket.SHUT_WR)
            threading.Event().wait(0.5)  # then close with the body unread: a reset

    threading.Thread(target=refuse_early, daemon=True).start()
    pool = Pool(f"http://127.0.0.1:{port}", {"Content-Type": "a", "Accept": "b"}, 5.0, True)
    try:
        status, headers, content = pool.request("POST", "/big", b"x" * (64 << 20))
    finally:
        pool.close()
        listener.close()
    assert status == 413 and content == answer and headers["connection"] == "close"
