"""The SDK's keep-alive transport against a real ``vectorpanda up``, through a proxy that
can cut, delay or close a connection at a chosen answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vectorpanda_client.sync_client as sync_module
from tests.loopback_http import LoopbackListener, read_message
from tests.stack import Stack
from vectorpanda_client import (
    NO_RETRIES,
    Client,
    ConnectionFailed,
    NotFoundError,
    RetryPolicy,
)

pytestmark = pytest.mark.integration

DIM = 8


class AnswerProxy(LoopbackListener):
    """Forwards each request to the server and its answer back, unless told otherwise for
    the next answers: ``"cut"`` sends half of it and drops the connection, ``"close"``
    sends it and then closes, ``"delay"`` holds it ``delay_s`` first."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target
        self.requests: list[bytes] = []  # request lines, in order
        self.plan: list[str] = []
        self.delay_s = 1.0
        self._lock = threading.Lock()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        inbound = outbound = b""
        with conn, upstream:
            while True:
                got = read_message(conn, inbound)
                if got is None:
                    return
                request, inbound = got
                with self._lock:
                    self.requests.append(request.split(b"\r\n", 1)[0])
                    mode = self.plan.pop(0) if self.plan else "pass"
                upstream.sendall(request)
                answered = read_message(upstream, outbound)
                if answered is None:
                    return
                answer, outbound = answered
                try:
                    if mode == "cut":
                        conn.sendall(answer[: len(answer) // 2])
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    if mode == "delay":
                        time.sleep(self.delay_s)
                    conn.sendall(answer)
                    if mode == "close":
                        return
                except OSError:  # the client gave up on this connection
                    return

    def sent(self, request_line: bytes) -> int:
        return sum(1 for r in self.requests if r.startswith(request_line))


@pytest.fixture
def proxy(stack: Stack) -> Iterator[AnswerProxy]:
    port = int(stack.url.rsplit(":", 1)[1])
    p = AnswerProxy(("127.0.0.1", port))
    yield p
    p.close()


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    return stack.new_client("transport", tier="premium")


def _collection(client: Client, name: str) -> np.ndarray:
    client.create_collection(name, DIM, metric="l2")
    data = np.random.default_rng(5).standard_normal((20, DIM), dtype=np.float32)
    client.collection(name).upsert([f"v{i}" for i in range(20)], data)
    return data


def test_one_kept_alive_connection_carries_every_request_and_error_answers(
    proxy: AnswerProxy, key: str
) -> None:
    with Client(proxy.url, key) as client:
        data = _collection(client, "t-keep")
        col = client.collection("t-keep")
        for i in range(30):
            assert col.query(data[i % 20], top_k=1).ids == [f"v{i % 20}"]
        assert col.fetch(["v3"])["v3"].values.tolist() == data[3].tolist()
        with pytest.raises(NotFoundError) as missing:
            client.collection("t-none").describe()
        assert missing.value.status == 404 and missing.value.request_id
        assert client.collection("t-keep").count() == 20  # after an error answer too
    assert proxy.connections == 1
    assert proxy.sent(b"POST /v1/collections/t-keep/query ") == 30


def test_a_connection_the_server_closed_is_not_reused_even_for_a_write(
    proxy: AnswerProxy, key: str
) -> None:
    with Client(proxy.url, key, retry=NO_RETRIES) as client:
        proxy.plan = ["close"]
        client.usage()
        time.sleep(0.2)  # the close reaches the client's idle connection
        # create_collection is not retried: on the closed connection it would fail
        assert client.create_collection("t-closed", DIM).name == "t-closed"
    assert proxy.connections == 2


def test_an_answer_cut_midway_is_retried_for_a_read_and_an_idempotent_write(
    proxy: AnswerProxy, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module.time, "sleep", lambda s: None)
    with Client(proxy.url, key) as client:
        data = _collection(client, "t-cut-read")
        col = client.collection("t-cut-read")
        proxy.plan = ["cut"]
        assert col.query(data[7], top_k=3).ids[0] == "v7"
        assert proxy.sent(b"POST /v1/collections/t-cut-read/query ") == 2
        proxy.plan = ["cut"]
        assert col.upsert(["w1"], data[:1]) == 1  # upserting the same vector again is safe
        assert proxy.sent(b"POST /v1/collections/t-cut-read/upsert ") == 3  # 1 load + 2
        assert col.count() == 21
    assert proxy.connections == 3


def test_an_answer_cut_midway_for_a_write_that_is_not_idempotent_is_reported(
    proxy: AnswerProxy, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_module.time, "sleep", lambda s: None)
    with Client(proxy.url, key) as client:
        proxy.plan = ["cut"]
        with pytest.raises(ConnectionFailed) as broken:
            client.create_collection("t-cut-write", DIM)
        assert broken.value.sent is True and not broken.value.refused
        assert proxy.sent(b"POST /v1/collections ") == 1  # not repeated
        # the outcome was unknown to the client; the server did act
        assert client.collection("t-cut-write").describe().dimension == DIM


def test_a_read_timeout_fails_the_exchange_and_a_retry_succeeds(
    proxy: AnswerProxy, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(proxy.url, key) as client:
        data = _collection(client, "t-slow")
    proxy.delay_s = 1.5
    with Client(proxy.url, key, timeout=0.3, retry=NO_RETRIES) as client:
        proxy.plan = ["delay"]
        started = time.perf_counter()
        with pytest.raises(ConnectionFailed, match="ReadTimeout") as slow:
            client.collection("t-slow").query(data[0], top_k=1)
        assert slow.value.sent is True
        assert time.perf_counter() - started < 1.4  # gave up at its timeout, not the answer
    monkeypatch.setattr(sync_module.time, "sleep", lambda s: None)
    with Client(proxy.url, key, timeout=0.3, retry=RetryPolicy(max_retries=1)) as client:
        proxy.plan = ["delay"]
        assert client.collection("t-slow").query(data[2], top_k=1).ids == ["v2"]


def test_rate_limited_answers_are_waited_out_for_at_least_retry_after(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = stack.new_client("transport-free")  # the free tier's small burst
    slept: list[float] = []
    real_sleep = time.sleep  # sync_module.time is the time module

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(sync_module.time, "sleep", sleep)
    # The free tier earns a request back every 40 ms: on a slow machine the SDK's first
    # request may come after one was earned, and is answered at once. Then the bucket
    # is drained again (a few times at most) until the SDK meets a 429.
    with stack.client(free) as http, Client(stack.url, free) as client:
        for _ in range(5):
            for _ in range(500):
                refused = http.get("/v1/usage")
                if refused.status_code == 429:
                    break
            assert refused.status_code == 429
            retry_after = int(refused.headers["Retry-After"])
            assert client.usage().tier == "free"
            if slept:
                break
    assert slept and slept[0] >= retry_after


def test_nothing_listening_is_refused_not_sent_and_retried_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(sync_module.time, "sleep", slept.append)
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    with Client(f"http://127.0.0.1:{port}", "vp_x") as client, pytest.raises(ConnectionFailed) as e:
        client.usage()
    assert e.value.sent is False and e.value.refused is True
    assert len(slept) == 1


def test_one_client_shared_by_threads_keeps_one_connection_per_concurrent_request(
    proxy: AnswerProxy, key: str
) -> None:
    with Client(proxy.url, key) as client:
        data = _collection(client, "t-shared")
        col = client.collection("t-shared")

        def ask(start: int) -> list[bool]:
            return [
                col.query(data[i % 20], top_k=1).ids == [f"v{i % 20}"]
                for i in range(start, start + 25)
            ]

        with ThreadPoolExecutor(8) as pool:
            answers = [ok for batch in pool.map(ask, range(0, 200, 25)) for ok in batch]
    assert len(answers) == 200 and all(answers)
    assert 1 <= proxy.connections <= 8
