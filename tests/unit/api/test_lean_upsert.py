"""Large JSON upserts answered from the admission gate (api/lean_upsert.py), their bodies
parsed by the query desk's helper process: what the app's chain would answer, alone.

As tests/unit/api/test_lean_front.py does for queries: each request goes to the app and
to the same app whose gate hands every admitted request to the chain (FastAPI, the
middleware stack and the reference route). Answers, request log lines, metrics, usage
and what reaches the worker must be the same, and a lean upsert must not touch the
middleware stack.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from api.query_desk import BIG_BODY_BYTES
from api.services import ServicesApp
from coordinator.metrics import Metrics
from tests.unit.api.test_lean_front import (
    READER,
    WRITER,
    Usage,
    assert_alike,
    build,
    client,
    headers,
    request_counts,
    request_lines,
)
from workers.protocol import Op

PATH = "/v1/collections/docs/upsert"
RNG = np.random.default_rng(23)
MATRIX = RNG.standard_normal((300, 64)).astype(np.float32)  # values enough for the desk


class Worker:
    """The router's part: answers UPSERT frames, noting what it was sent."""

    observe_frame = None

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], bytes]] = []

    async def call(
        self, tenant: str, op: Any, args: dict[str, Any], arrays: Any = None, spent_s: float = 0.0
    ) -> Any:
        assert op == Op.UPSERT
        vectors = arrays["vectors"]
        self.calls.append((args, vectors.astype("<f4").tobytes()))
        return SimpleNamespace(header={"upserted": len(args["ids"])}, arrays={})


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[bool, tuple[ServicesApp, Metrics, Usage, Worker]]]:
    """A lean app (its desk's helper started) and a chain-only app."""
    built = {}
    for lean in (True, False):
        worker = Worker()
        app, metrics, usage = build(worker, lean=lean, max_body=16 << 20)
        if lean:
            app.query_desk._pool_started()
            assert app.query_desk._started is not None
            assert app.query_desk._started.result(timeout=60)
        built[lean] = (app, metrics, usage, worker)
    yield built
    for app, *_ in built.values():
        app.query_desk.close()


def _rows(matrix: np.ndarray = MATRIX, **extra: Any) -> dict[str, Any]:
    rows = [
        {"id": f"v{i}", "values": row.tolist(), "metadata": {"n": i}}
        for i, row in enumerate(matrix)
    ]
    return {"vectors": rows, **extra}


def _packed() -> dict[str, Any]:
    ids = [f"p{i}" for i in range(len(MATRIX))]
    return {"ids": ids, "values_b64": base64.b64encode(MATRIX.astype("<f4").tobytes()).decode()}


def _ragged() -> dict[str, Any]:
    doc = _rows()
    doc["vectors"][4]["values"].pop()
    return doc


JSON = "application/json"
REQUESTS: list[tuple[str, bytes, str]] = [
    (WRITER, orjson.dumps(_rows()), JSON),
    (WRITER, orjson.dumps(_packed()), JSON),
    (READER, orjson.dumps(_rows()), JSON),  # no write scope: 403
    (WRITER, orjson.dumps(_ragged()), JSON),  # refused: the route answers
    (WRITER, orjson.dumps(_rows(extra=1)), JSON),
    (WRITER, orjson.dumps(_rows(np.zeros((1001, 20), np.float32))), JSON),
    (WRITER, orjson.dumps(_rows())[:-2], JSON),  # not JSON
    (WRITER, orjson.dumps(_rows(MATRIX[:3])), JSON),  # small: the route parses it
    (WRITER, orjson.dumps(_rows()), "application/json; charset=utf-8"),  # not exactly JSON
]


async def _answers(
    app: ServicesApp, metrics: Metrics, usage: Usage, caplog: pytest.LogCaptureFixture
) -> tuple[list[Any], ...]:
    got = []
    caplog.clear()
    usage.seen.clear()
    with caplog.at_level(logging.INFO, logger="vectorpanda.requests"):
        async with client(app) as c:
            for i, (key, body, ctype) in enumerate(REQUESTS):
                r = await c.post(PATH, content=body, headers=headers(key, f"upsert-{i:04d}", ctype))
                got.append((r.status_code, sorted(r.headers.multi_items()), r.content))
    return got, request_lines(caplog), request_counts(metrics), list(usage.seen)


async def test_lean_upserts_answers_logs_metrics_and_frames_are_the_chains(
    apps: dict[bool, tuple[ServicesApp, Metrics, Usage, Worker]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert len(REQUESTS[0][1]) >= BIG_BODY_BYTES and len(REQUESTS[7][1]) < BIG_BODY_BYTES
    lean = await _answers(*apps[True][:3], caplog)
    chain = await _answers(*apps[False][:3], caplog)
    assert_alike(lean, chain, len(REQUESTS))
    statuses = [status for status, _, _ in lean[0]]
    assert statuses == [200, 200, 403, 422, 422, 413, 400, 200, 200]
    assert lean[0][0][2] == b'{"upserted":300}'
    assert lean[1][0]["route"] == "/v1/collections/{name}/upsert"
    assert apps[True][3].calls == apps[False][3].calls  # the same frames reached the worker
    assert len(apps[True][3].calls) == 4


async def test_a_large_upsert_touches_nothing_behind_the_gate(
    apps: dict[bool, tuple[ServicesApp, Metrics, Usage, Worker]],
) -> None:
    app = apps[True][0]
    stack = app.middleware_stack

    async def no_stack(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a large upsert reached the middleware stack")

    app.middleware_stack = no_stack
    try:
        async with client(app) as c:
            body = orjson.dumps(_rows())
            r = await c.post(PATH, content=body, headers=headers(WRITER, "x1"))
            assert r.status_code == 200 and r.json() == {"upserted": 300}
            # packed (as the SDK sends): few values, cheap to parse; the route answers
            packed = orjson.dumps(_packed())
            assert len(packed) >= BIG_BODY_BYTES
            r = await c.post(PATH, content=packed, headers=headers(WRITER, "x1"))
            assert r.status_code == 500  # it reached the stack
    finally:
        app.middleware_stack = stack


async def test_a_large_upsert_while_the_desk_starts_is_the_routes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Worker()
    app, _, _ = build(worker, lean=True, max_body=16 << 20)
    try:
        async with client(app) as c:
            body = orjson.dumps(_rows())
            r = await c.post(PATH, content=body, headers=headers(WRITER, "x2"))
        assert r.status_code == 200 and r.json() == {"upserted": 300}  # by the route
        assert worker.calls and worker.calls[0][0]["ids"][:2] == ["v0", "v1"]
    finally:
        app.query_desk.close()


async def test_a_small_upsert_never_starts_the_desk() -> None:
    worker = Worker()
    app, _, _ = build(worker, lean=True, max_body=16 << 20)
    body = orjson.dumps(_rows(MATRIX[:3]))
    async with client(app) as c:
        r = await c.post(PATH, content=body, headers=headers(WRITER, "x3"))
    assert r.status_code == 200 and r.json() == {"upserted": 3}
    assert app.query_desk._pool is None  # its declared size sent it to the route unread
