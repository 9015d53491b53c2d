"""The SDK's retry policy and transport, against httpx.MockTransport (no server)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import httpx
import numpy as np
import pytest

import vectorpanda_client.async_client as async_module
import vectorpanda_client.sync_client as sync_module
from vectorpanda_client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    QuotaExceededError,
    RateLimitedError,
    RetryPolicy,
    UnavailableError,
)

KEY = "vp_0123456789abcdef_" + "s" * 43


def error(status: int, code: str, retry_after: int | None = None) -> httpx.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"code": code, "message": f"{code} says the server", "request_id": "r1"}}
    return httpx.Response(status, json=body, headers=headers)


def ok_usage() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "client_id": "c1",
            "tier": "free",
            "status": "active",
            "collections": 0,
            "vectors": 0,
            "bytes": 0,
            "limits": {},
        },
    )


def scripted(*answers: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[str]]:
    """A transport answering each request with the next scripted answer."""
    queue = list(answers)
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        assert request.headers["authorization"] == f"Bearer {KEY}"
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle), seen


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(sync_module.time, "sleep", waited.append)
    return waited


def test_rate_limited_is_retried_after_at_least_retry_after(sleeps: list[float]) -> None:
    transport, seen = scripted(
        error(429, "rate_limited", 2), error(429, "rate_limited", 1), ok_usage()
    )
    with Client("http://vp", KEY, transport=transport) as client:
        assert client.usage().tier == "free"
    assert len(seen) == 3
    assert sleeps[0] >= 2 and sleeps[1] >= 1
    assert all(s < 3 for s in sleeps)


def test_unavailable_503_is_retried_with_growing_backoff(sleeps: list[float]) -> None:
    transport, seen = scripted(*(error(503, "unavailable") for _ in range(4)), ok_usage())
    policy = RetryPolicy(max_retries=5, base_delay=0.1, max_delay=10)
    with Client("http://vp", KEY, transport=transport, retry=policy, seed=1) as client:
        client.usage()
    assert len(seen) == 5
    # equal jitter: retry n waits between half and all of base * 2**n
    for n, waited in enumerate(sleeps):
        assert 0.1 * 2**n / 2 <= waited <= 0.1 * 2**n


def test_quota_exceeded_is_not_retried(sleeps: list[float]) -> None:
    transport, seen = scripted(error(429, "quota_exceeded", 1))
    client = Client("http://vp", KEY, transport=transport)
    with client, pytest.raises(QuotaExceededError) as info:
        client.collection("c").upsert(["a"], np.ones((1, 4), dtype=np.float32))
    assert len(seen) == 1 and sleeps == []
    assert info.value.code == "quota_exceeded" and info.value.status == 429
    assert info.value.request_id == "r1" and "says the server" in str(info.value)


def test_gives_up_after_max_retries_with_the_last_error(sleeps: list[float]) -> None:
    transport, seen = scripted(*(error(429, "rate_limited", 1) for _ in range(3)))
    policy = RetryPolicy(max_retries=2)
    client = Client("http://vp", KEY, transport=transport, retry=policy)
    with client, pytest.raises(RateLimitedError) as info:
        client.usage()
    assert len(seen) == 3 and len(sleeps) == 2
    assert info.value.retry_after == 1


def test_unreachable_server_is_retried_then_reported(sleeps: list[float]) -> None:
    refused = httpx.ConnectError("connection refused")
    transport, seen = scripted(refused, refused, ok_usage())
    with Client("http://vp", KEY, transport=transport) as client:
        client.usage()
    assert len(seen) == 3
    transport, seen = scripted(refused, refused)
    client = Client("http://vp", KEY, transport=transport, retry=RetryPolicy(max_retries=1))
    with client, pytest.raises(ConnectionFailed) as info:
        client.usage()
    assert info.value.sent is False


def test_broken_exchange_is_not_repeated_for_a_non_idempotent_call(sleeps: list[float]) -> None:
    transport, seen = scripted(httpx.ReadError("connection reset"))
    client = Client("http://vp", KEY, transport=transport)
    with client, pytest.raises(ConnectionFailed):
        client.create_collection("c", 4)
    assert len(seen) == 1
    # an upsert replaces by id, so repeating it is safe
    body = {"upserted": 1}
    transport, seen = scripted(httpx.ReadError("reset"), httpx.Response(200, json=body))
    with Client("http://vp", KEY, transport=transport) as client:
        assert client.collection("c").upsert(["a"], [[1.0, 2.0]]) == 1
    assert len(seen) == 2


def test_retry_midway_through_a_batched_upsert_resends_only_that_batch(
    sleeps: list[float],
) -> None:
    transport, seen = scripted(
        httpx.Response(200, json={"upserted": 1000}),
        error(503, "unavailable", 1),
        httpx.Response(200, json={"upserted": 1000}),
        httpx.Response(200, json={"upserted": 500}),
    )
    data = np.zeros((2500, 4), dtype=np.float32)
    with Client("http://vp", KEY, transport=transport) as client:
        assert client.collection("c").upsert([str(i) for i in range(2500)], data) == 2500
    assert len(seen) == 4 and len(sleeps) == 1


def test_async_client_follows_the_same_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(async_module.asyncio, "sleep", fake_sleep)
    transport, seen = scripted(error(429, "rate_limited", 1), error(503, "unavailable"), ok_usage())

    async def main() -> None:
        async with AsyncClient("http://vp", KEY, transport=transport) as client:
            assert (await client.usage()).client_id == "c1"
            with pytest.raises(UnavailableError):
                bad, _ = scripted(*(error(503, "unavailable") for _ in range(2)))
                async with AsyncClient(
                    "http://vp", KEY, transport=bad, retry=RetryPolicy(max_retries=1)
                ) as other:
                    await other.usage()

    asyncio.run(main())
    assert len(seen) == 3 and waited[0] >= 1 and len(waited) == 3


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (429, "rate_limited", True),
        (503, "unavailable", True),
        (503, "busy", True),
        (503, "", True),  # a bare 503 from a proxy
        (429, "quota_exceeded", False),
        (422, "invalid", False),
        (500, "internal", False),
        (404, "not_found", False),
    ],
)
def test_which_answers_are_retried(status: int, code: str, retried: bool) -> None:
    from vectorpanda_client.errors import error_from_response

    body = b'{"error": {"code": "%s", "message": "m"}}' % code.encode() if code else b"busy"
    err = error_from_response(status, {}, body)
    delay = RetryPolicy().delay(0, err, idempotent=False, rng=random.Random(0))
    assert (delay is not None) == retried


def test_waits_never_exceed_the_cap_unless_the_server_asks() -> None:
    from vectorpanda_client.errors import RateLimitedError as Limited

    policy = RetryPolicy(max_retries=50, base_delay=0.2, max_delay=5)
    rng = random.Random(3)
    never: Callable[[int], float | None] = lambda n: policy.delay(  # noqa: E731
        n, Limited("x", status=429), True, rng
    )
    assert all((d := never(n)) is not None and d <= 5 for n in range(50))
    assert (policy.delay(0, Limited("x", status=429, retry_after=30), True, rng) or 0) >= 30


def test_connection_refused_fails_fast_naming_the_url() -> None:
    """Nothing listening: one short retry, then an error that says where it tried."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}"
    with (
        Client(url, KEY, retry=RetryPolicy(max_retries=6)) as c,
        pytest.raises(ConnectionFailed) as failed,
    ):
        c.usage()
    assert url in str(failed.value) and failed.value.refused


def test_a_refused_connection_is_tried_twice_not_seven_times() -> None:
    attempts = []

    def handle(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise httpx.ConnectError("[Errno 111] Connection refused") from exc

    transport = httpx.MockTransport(handle)
    policy = RetryPolicy(max_retries=6, base_delay=0.01)
    with (
        Client("http://vp.test", KEY, retry=policy, transport=transport) as c,
        pytest.raises(ConnectionFailed),
    ):
        c.usage()
    assert len(attempts) == 2


async def test_connection_refused_fails_fast_async_too() -> None:
    async with AsyncClient("http://127.0.0.1:9", KEY) as c:
        with pytest.raises(ConnectionFailed) as failed:
            await c.usage()
    assert "http://127.0.0.1:9" in str(failed.value)


def test_refused_connections_are_retried_once_then_given_up() -> None:
    refused = ConnectionFailed("refused", sent=False, refused=True)
    policy = RetryPolicy()
    rng = random.Random(1)
    assert policy.delay(0, refused, idempotent=True, rng=rng) == policy.base_delay
    assert policy.delay(1, refused, idempotent=True, rng=rng) is None
    other = ConnectionFailed("reset", sent=False)
    assert policy.delay(3, other, idempotent=True, rng=rng) is not None


def test_verify_comes_from_the_argument_or_vp_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    from vectorpanda_client.base import tls_verify

    monkeypatch.delenv("VP_CA_BUNDLE", raising=False)
    assert tls_verify(None) is True
    assert tls_verify(False) is False
    monkeypatch.setenv("VP_CA_BUNDLE", "/etc/vp/ca.pem")
    assert tls_verify(None) == "/etc/vp/ca.pem"
    assert tls_verify("/other.pem") == "/other.pem"


def test_outcome_unknown_is_retried_only_when_repeating_is_safe() -> None:
    from vectorpanda_client.errors import error_from_response

    body = b'{"error": {"code": "outcome_unknown", "message": "m"}}'
    err = error_from_response(503, {}, body)
    rng = random.Random(0)
    assert RetryPolicy().delay(0, err, idempotent=True, rng=rng) is not None
    assert RetryPolicy().delay(0, err, idempotent=False, rng=rng) is None
