"""The admission gate as the app's front: refusals answered by it alone, exact and counted."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from api.admission import PAUSED, UNAUTHORIZED, AdmissionGate
from api.app import create_app
from api.services import ServicesApp
from coordinator.accounts.model import Principal
from coordinator.dataplane import Limits
from coordinator.metrics import Metrics
from coordinator.rate_limit import RateLimiter

GOOD = "vp_0123456789abcdef_" + "g" * 43
PAUSED_KEY = "vp_fedcba9876543210_" + "p" * 43
BROKEN = "vp_00000000000000bb_" + "b" * 43
UNKNOWN = "vp_0123456789abcdee_" + "x" * 43
MAX_BODY = 4096


async def authenticate(token: str) -> Principal | None:
    if token == BROKEN:
        raise RuntimeError("the control database went away")
    status = {GOOD: "active", PAUSED_KEY: "paused"}.get(token)
    if status is None:
        return None
    scopes = frozenset({"read", "write"})
    return Principal("c1", token[3:19], scopes, "d", "free", status)


class Usage:
    """The usage meter's part: every request outcome it is told of."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, int]] = []

    def observe_request(self, scope: Any, status: int, seconds: float) -> None:
        self.seen.append((scope.get("state", {}).get("client_id"), status))


def build(metrics: Metrics, usage: Usage, limiter: RateLimiter | None = None) -> ServicesApp:
    parts: Any = SimpleNamespace(
        limits=Limits(max_body_bytes=MAX_BODY),
        router=SimpleNamespace(),
        authenticate=authenticate,
        uow=None,
    )
    app = create_app(
        accounts=parts,
        dataplane=parts,
        hub=parts,
        admin_token="t",
        rate_limiter=limiter,
        metrics=metrics,
        usage_meter=usage,
    )
    assert isinstance(app, ServicesApp) and isinstance(app.front, AdmissionGate)
    return app


def client(app: ServicesApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def exact_error(r: httpx.Response, status: int, code: str, message: str) -> None:
    """The API's error format, byte for byte as the routes' errors are made."""
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    request_id = r.headers["x-request-id"]
    assert r.content == orjson.dumps(
        {"error": {"code": code, "message": message, "request_id": request_id}}
    )
    assert int(r.headers["content-length"]) == len(r.content)


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


async def test_every_refusal_is_exact_and_keeps_an_incoming_request_id() -> None:
    limiter = RateLimiter(clock=lambda: 0.0)
    app = build(Metrics(), Usage(), limiter)
    async with client(app) as c:
        r = await c.post("/v1/collections/x/query", json={})
        exact_error(r, 401, "unauthorized", UNAUTHORIZED)
        assert "retry-after" not in r.headers
        r = await c.post("/v1/collections/x/query", json={}, headers=bearer(UNKNOWN))
        exact_error(r, 401, "unauthorized", UNAUTHORIZED)
        r = await c.post("/v1/collections/x/query", json={}, headers=bearer(PAUSED_KEY))
        exact_error(r, 423, "paused", PAUSED)
        big = b"{" + b" " * MAX_BODY + b"}"
        r = await c.post("/v1/collections/x/query", content=big, headers=bearer(UNKNOWN))
        # the declared size is refused first, whoever asks
        exact_error(
            r, 413, "payload_too_large", f"The request body is over the limit of {MAX_BODY} bytes."
        )
        for _ in range(50):  # the free tier's burst
            limiter.acquire("c1", 25, 50)
        r = await c.get("/v1/collections", headers=bearer(GOOD, **{"X-Request-Id": "mine-0001"}))
        exact_error(
            r,
            429,
            "rate_limited",
            "Over the free tier's rate of 25 requests/s (burst 50; a request counts 1 plus 1"
            " per 10,000 rows or vectors it examined); retry after 1 s.",
        )
        assert r.headers["x-request-id"] == "mine-0001" and r.headers["retry-after"] == "1"
        r = await c.get("/v1/collections", headers=bearer(UNKNOWN, **{"X-Request-Id": "bad id"}))
        assert r.headers["x-request-id"] != "bad id"
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


async def test_a_refusal_touches_nothing_behind_the_gate() -> None:
    app = build(Metrics(), Usage())

    async def no_stack(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused request reached the middleware stack")

    app.middleware_stack = no_stack  # what FastAPI would run for any request
    async with client(app) as c:
        assert (await c.get("/v1/collections")).status_code == 401
        assert (await c.get("/v1/collections", headers=bearer(PAUSED_KEY))).status_code == 423
        # an admitted request does go behind it
        assert (await c.get("/v1/collections", headers=bearer(GOOD))).status_code == 500


async def test_refusals_are_counted_logged_and_metered(caplog: pytest.LogCaptureFixture) -> None:
    metrics, usage = Metrics(), Usage()
    app = build(metrics, usage)
    async with client(app) as c:
        with caplog.at_level(logging.INFO, logger="vectorpanda.requests"):
            for _ in range(3):
                await c.post("/v1/collections/x/query", json={}, headers=bearer(UNKNOWN))
            paused = await c.get("/v1/collections", headers=bearer(PAUSED_KEY))
        metrics.snapshot()  # as GET /metrics does before rendering
        text = metrics.render().decode()
    assert 'vectorpanda_http_requests_total{method="POST",route="unmatched",status="401"} 3.0' in (
        text
    )
    assert 'vectorpanda_http_requests_total{method="GET",route="unmatched",status="423"} 1.0' in (
        text
    )
    metrics.snapshot()  # a second scrape adds nothing twice
    assert 'route="unmatched",status="401"} 3.0' in metrics.render().decode()
    # the paused client's usage counts its rejected request; an unknown key has no client
    assert usage.seen == [("c1", 423)]
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name.endswith("requests")]
    assert [(line["status"], line["client_id"]) for line in lines] == [(401, None)] * 3 + [
        (423, "c1")
    ]
    last = lines[-1]
    assert last["request_id"] == paused.headers["x-request-id"]
    assert last["route"] == "unmatched" and last["method"] == "GET"
    assert set(last) == {"ts", "request_id", "client_id", "route", "method", "status", "latency_ms"}


async def test_a_failing_key_check_is_a_json_500_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    app = build(metrics, Usage())
    async with client(app) as c:
        with caplog.at_level(logging.ERROR, logger="vectorpanda.errors"):
            r = await c.get("/v1/collections", headers=bearer(BROKEN))
    exact_error(r, 500, "internal", "Internal error.")
    assert "the control database went away" in caplog.text
    assert r.headers["x-request-id"] in caplog.text
    text = metrics.render().decode()
    assert 'vectorpanda_internal_errors_total{method="GET",route="unmatched"} 1.0' in text


async def test_an_admitted_request_keeps_the_gates_request_id() -> None:
    app = build(Metrics(), Usage())
    async with client(app) as c:
        r = await c.get("/v1/no/such/route", headers=bearer(GOOD, **{"X-Request-Id": "mine-0002"}))
    assert r.status_code == 404
    assert r.headers.get_list("x-request-id") == ["mine-0002"]
    assert r.json()["error"]["request_id"] == "mine-0002"
