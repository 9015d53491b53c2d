"""Lean queries answered from the admission gate: what the app's chain would answer, alone.

Each request is sent twice: to the app (the gate hands an admitted query to
api/lean_front.py) and to the same app whose gate hands every admitted request to the
chain (FastAPI, the middleware stack and the reference route). The answers, the request
log lines and the metrics must be the same, and the lean answers must not touch the
middleware stack at all.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from api.app import create_app
from api.lean_front import LeanFront
from api.services import ServicesApp
from coordinator.accounts.model import Principal
from coordinator.dataplane import DataPlane, Limits
from coordinator.errors import TenantUnavailable
from coordinator.metrics import Metrics

READER = "vp_0123456789abcdef_" + "r" * 43
WRITER = "vp_fedcba9876543210_" + "w" * 43
MAX_BODY = 8192
PATH = "/v1/collections/docs/query"


async def authenticate(token: str) -> Principal | None:
    scopes = {READER: frozenset({"read"}), WRITER: frozenset({"write"})}.get(token)
    if scopes is None:
        return None
    return Principal("c1", token[3:19], scopes, "d", "premium", "active")


class Worker:
    """The router's part: answers a QUERY frame rendered, fails, or never answers."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.calls: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()

    observe_frame = None

    async def call(
        self, tenant: str, op: Any, args: dict[str, Any], arrays: Any = None, spent_s: float = 0.0
    ) -> Any:
        self.calls.append(args)
        if self.mode == "defect":
            raise RuntimeError("the worker link broke in an unexpected way")
        if self.mode == "unavailable":
            raise TenantUnavailable("No worker can serve this tenant right now; retry shortly.")
        if self.mode == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        k = args["top_k"]
        answer = orjson.dumps({"matches": [{"id": f"v{i}", "score": i / 2} for i in range(k)]})
        body = np.frombuffer(answer, dtype=np.uint8)
        return SimpleNamespace(header={"rendered": True}, arrays={"body": body})


class Usage:
    def __init__(self) -> None:
        self.seen: list[tuple[str | None, int]] = []

    def observe_request(self, scope: Any, status: int, seconds: float) -> None:
        self.seen.append((scope.get("state", {}).get("client_id"), status))


def build(
    worker: Any, *, lean: bool, max_body: int = MAX_BODY
) -> tuple[ServicesApp, Metrics, Usage]:
    metrics, usage = Metrics(), Usage()
    dataplane = DataPlane(worker, Limits(max_body_bytes=max_body))
    parts: Any = SimpleNamespace(authenticate=authenticate, uow=None)
    app = create_app(
        accounts=parts,
        dataplane=dataplane,
        hub=parts,
        admin_token="t",
        metrics=metrics,
        usage_meter=usage,
    )
    assert isinstance(app, ServicesApp) and app.front is not None
    gate: Any = app.front
    assert isinstance(gate.app, LeanFront)
    if not lean:
        gate.app = app.behind_front  # every admitted request through the whole chain
    return app, metrics, usage


def client(app: ServicesApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def binary_query(vector: list[float], **options: Any) -> bytes:
    head = orjson.dumps({**options, "shape": [len(vector)]})
    return b"VPQ1" + struct.pack("<I", len(head)) + head + np.asarray(vector, "<f4").tobytes()


def headers(key: str, request_id: str, content_type: str = "application/json") -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "X-Request-Id": request_id,
        "Content-Type": content_type,
    }


JSON = "application/json"
BINARY = "application/x-vectorpanda"
# JSON bodies: the chain's reference route reads them too (binary ones only the lean path).
REQUESTS: list[tuple[str, bytes, str]] = [
    (READER, orjson.dumps({"vector": [0.5, 1, -2.0], "top_k": 3}), JSON),
    (READER, orjson.dumps({"vectors": [[1.0, 2.0]], "top_k": 2}), JSON),
    # refused by the lean checks themselves: the API's error bodies
    (READER, orjson.dumps({"vector": [1.0], "top_k": 100_000}), JSON),
    (READER, b'{"vector": [1.0, 1e39], "top_k": 2}', JSON),
    (READER, orjson.dumps({"vectors": [[1.0], [1.0, 2.0]]}), JSON),
    # not provably valid: the reference route answers
    (READER, orjson.dumps({"vector": [1.0, "x"]}), JSON),
    (READER, b"{not json", JSON),
    (READER, orjson.dumps({"vector": [1.0], "unknown": 1}), JSON),
    (READER, orjson.dumps({"vector": [1.0]}), "text/plain"),
    (WRITER, orjson.dumps({"vector": [1.0]}), JSON),  # no read scope: 403
]


def request_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = []
    for record in caplog.records:
        if record.name == "vectorpanda.requests":
            line = orjson.loads(record.getMessage())
            del line["ts"], line["latency_ms"]
            lines.append(line)
    return lines


def request_counts(metrics: Metrics) -> list[str]:
    text = metrics.render().decode()
    return sorted(
        line
        for line in text.splitlines()
        if line.startswith(("vectorpanda_http_requests_total", "vectorpanda_internal_errors"))
        or (line.startswith("vectorpanda_http_request_duration_seconds_count"))
    )


async def answers(lean: bool, caplog: pytest.LogCaptureFixture) -> tuple[list[Any], ...]:
    worker = Worker()
    app, metrics, usage = build(worker, lean=lean)
    got = []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vectorpanda.requests"):
        async with client(app) as c:
            for i, (key, body, ctype) in enumerate(REQUESTS):
                r = await c.post(PATH, content=body, headers=headers(key, f"req-{i:04d}", ctype))
                got.append((r.status_code, sorted(r.headers.multi_items()), r.content))
    return got, request_lines(caplog), request_counts(metrics), usage.seen


def assert_alike(lean: tuple[list[Any], ...], chain: tuple[list[Any], ...], count: int) -> None:
    """The same answers (status, headers, body), request log lines, metrics and usage."""
    for got, want in zip(lean[0], chain[0], strict=True):
        assert got == want
    assert lean[1] == chain[1] and len(lean[1]) == count
    assert lean[2] == chain[2]
    assert lean[3] == chain[3]


async def test_lean_answers_logs_and_metrics_are_the_chains(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lean = await answers(True, caplog)
    chain = await answers(False, caplog)
    assert_alike(lean, chain, len(REQUESTS))
    statuses = [status for status, _, _ in lean[0]]
    assert statuses == [200, 200, 422, 422, 422, 422, 400, 422, 422, 403]
    assert lean[1][0]["route"] == "/v1/collections/{name}/query"
    assert lean[1][0]["client_id"] == "c1" and lean[1][0]["request_id"] == "req-0000"
    assert (
        'vectorpanda_http_requests_total{method="POST",route="/v1/collections/{name}/query",'
        'status="200"} 2.0' in lean[2]
    )


async def test_a_lean_query_touches_nothing_behind_the_gate() -> None:
    app, _, _ = build(Worker(), lean=True)

    async def no_stack(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a lean query reached the middleware stack")

    app.middleware_stack = no_stack
    async with client(app) as c:
        body = orjson.dumps({"vector": [1.0, 2.0], "top_k": 2})
        r = await c.post(PATH, content=body, headers=headers(READER, "bad id"))
        assert r.status_code == 200 and r.json()["matches"][1] == {"id": "v1", "score": 0.5}
        assert r.headers["x-request-id"] != "bad id"  # not well formed: a new one
        assert len(r.headers["x-request-id"]) == 32
        # the binary format, answered the same as its JSON body, and its refusals
        binary = binary_query([1.0, 2.0], top_k=2)
        b = await c.post(PATH, content=binary, headers=headers(READER, "req-0002", BINARY))
        assert (b.status_code, b.content) == (200, r.content)
        bad = b"VPQ1\xff\xff\x00\x00{}"
        b = await c.post(PATH, content=bad, headers=headers(READER, "req-0003", BINARY))
        assert b.status_code == 400
        assert b.json()["error"] == {
            "code": "bad_request",
            "message": "the binary query is shorter than its header says",
            "request_id": "req-0003",
        }
        # not provably valid: the chain answers it
        r = await c.post(PATH, content=b"{", headers=headers(READER, "req-0001"))
        assert r.status_code == 500


async def test_a_defect_is_a_json_500_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker()
    worker.mode = "defect"
    for lean in (True, False):
        app, metrics, _ = build(worker, lean=lean)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            async with client(app) as c:
                body = orjson.dumps({"vector": [1.0, 2.0]})
                r = await c.post(PATH, content=body, headers=headers(READER, "req-defect"))
        assert r.status_code == 500
        assert r.content == orjson.dumps(
            {
                "error": {
                    "code": "internal",
                    "message": "Internal error.",
                    "request_id": "req-defect",
                }
            }
        )
        assert r.headers["x-request-id"] == "req-defect"
        errors = [rec for rec in caplog.records if rec.name == "vectorpanda.errors"]
        assert len(errors) == 1 and errors[0].exc_info is not None
        assert "POST /v1/collections/{name}/query (request req-defect)" in errors[0].getMessage()
        assert "the worker link broke" in caplog.text
        assert [line["status"] for line in request_lines(caplog)] == [500]
        assert (
            'vectorpanda_internal_errors_total{method="POST",'
            'route="/v1/collections/{name}/query"} 1.0' in metrics.render().decode()
        )


async def test_an_api_error_is_the_routes_error_with_retry_after() -> None:
    worker = Worker()
    worker.mode = "unavailable"
    got = []
    for lean in (True, False):
        app, _, _ = build(worker, lean=lean)
        async with client(app) as c:
            body = orjson.dumps({"vector": [1.0, 2.0]})
            r = await c.post(PATH, content=body, headers=headers(READER, "req-unavail"))
        got.append((r.status_code, sorted(r.headers.multi_items()), r.content))
    assert got[0] == got[1]
    assert got[0][0] == 503


async def test_a_body_over_the_limit_without_a_declared_size_is_a_413() -> None:
    app, _, _ = build(Worker(), lean=True)

    async def chunks() -> Any:
        yield b'{"vector": ['
        for _ in range(MAX_BODY // 8):
            yield b"1.00000,"
        yield b"1.0]}"

    async with client(app) as c:
        r = await c.post(PATH, content=chunks(), headers=headers(READER, "req-big0"))
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert r.json()["error"] == {
        "code": "payload_too_large",
        "message": f"The request body is over the limit of {MAX_BODY} bytes.",
        "request_id": "req-big0",
    }


async def test_a_client_that_leaves_cancels_the_worker_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker()
    worker.mode = "hang"
    app, _, _ = build(worker, lean=True)
    body = orjson.dumps({"vector": [1.0, 2.0]})
    sent: list[Any] = []
    delivered = False

    async def receive() -> Any:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}  # the client has left

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {READER}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "root_path": "",
        "http_version": "1.1",
    }
    with caplog.at_level(logging.INFO, logger="vectorpanda.requests"):
        await app(scope, receive, send)
    assert worker.cancelled.is_set()
    assert sent[0]["status"] == 503
    assert orjson.loads(sent[1]["body"])["error"]["message"] == (
        "The client went away before the answer."
    )
    assert [line["status"] for line in request_lines(caplog)] == [503]
