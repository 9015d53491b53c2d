"""The API edge in-process: strict JSON, filter bounds, and a defect answered as JSON."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from api.app import create_app
from api.errors import Invalid, install_error_handlers
from api.filter_bounds import check_filter_bounds
from api.middleware import RequestContext
from api.routing import OrjsonRoute, strict_json
from coordinator.accounts.model import Principal
from coordinator.dataplane import Limits
from coordinator.metrics import Metrics


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (rb'{"id": "\ud800"}', 422, "UTF-8"),
        (rb'{"id": "\udc00\ud800"}', 422, "UTF-8"),
        (b'{"id": "\xff"}', 422, "UTF-8"),
        (b'{"x": NaN}', 422, "NaN"),
        (b'{"x": Infinity}', 422, "Infinity"),
        (b'{"x": -Infinity}', 422, "-Infinity"),
        (b'{"x": 1e400}', 422, "finite"),
        (b"[" * 5000 + b"]" * 5000, 422, "nested"),
        (b'{"x": ', 400, "not valid JSON"),
        (b"{'x': 1}", 400, "not valid JSON"),
    ],
)
def test_strict_json_refuses(body: bytes, status: int, words: str) -> None:
    with pytest.raises(HTTPException) as refused:
        strict_json(body)
    assert refused.value.status_code == status
    assert words in str(refused.value.detail)


def test_strict_json_accepts_standard_json() -> None:
    assert strict_json(rb'{"id": "\ud83d\ude00", "n": [1, 2.5, true, null]}') == {
        "id": "\U0001f600",
        "n": [1, 2.5, True, None],
    }


LIMITS = Limits(max_filter_depth=2, max_filter_operands=4)


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {},
        {"a": 1, "b": {"$in": [1, 2, 3]}},
        {"$and": [{"$or": [{"a": {"$exists": True}}]}]},
        {"a": {"$regex": "x"}},  # grammar is the worker's business, not the bound's
    ],
)
def test_filters_within_bounds_pass(doc: dict | None) -> None:
    check_filter_bounds(doc, LIMITS)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"$and": [{"$or": [{"$and": [{"a": 1}]}]}]}, "VP_MAX_FILTER_DEPTH"),
        ({"a": {"$in": [1, 2, 3, 4, 5]}}, "VP_MAX_FILTER_OPERANDS"),
        ({"$or": [{"a": {"$in": [1, 2]}}, {"b": 1}]}, "VP_MAX_FILTER_OPERANDS"),
        ({"$and": [{}, {}, {}, {}, {}]}, "VP_MAX_FILTER_OPERANDS"),
        ({"a": {"$eq": {"b": {"c": 1}}}}, "operands are"),
        ({"a": [[1]]}, "operands are"),
        ({"$and": {"a": 1}}, "list of filters"),
        ({"$and": [[{"a": 1}]]}, "must be an object"),
    ],
)
def test_filters_past_bounds_are_refused(doc: dict, words: str) -> None:
    with pytest.raises(Invalid, match=words):
        check_filter_bounds(doc, LIMITS)


def _app_with_a_defect(metrics: Metrics) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a defect")

    # As create_app does: inside Starlette's ServerErrorMiddleware, which would answer text.
    app.add_middleware(RequestContext, max_body_bytes=1024, on_defect=metrics.observe_defect)
    return app


async def test_an_escaping_exception_is_a_json_500_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    app = _app_with_a_defect(metrics)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="vectorpanda.errors"):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == "internal"
    assert error["message"] == "Internal error."  # nothing of the exception leaks
    assert error["request_id"] == r.headers["x-request-id"]
    logged = [rec for rec in caplog.records if rec.name == "vectorpanda.errors"]
    assert logged and logged[0].exc_info is not None
    assert "RuntimeError: a defect" in caplog.text
    assert error["request_id"] in logged[0].getMessage()
    text = metrics.render().decode()
    assert 'vectorpanda_internal_errors_total{method="GET",route="/boom"} 1.0' in text


DATA_KEY = "vp_0123456789abcdef_" + "g" * 43


async def _authenticate(token: str) -> Principal | None:
    if token != DATA_KEY:
        return None
    scopes = frozenset({"read", "write", "manage"})
    return Principal("c1", "0123456789abcdef", scopes, "d", "free", "active")


def _stub_app() -> FastAPI:
    parts: Any = SimpleNamespace(
        limits=Limits(), router=SimpleNamespace(), authenticate=_authenticate, uow=None
    )
    return create_app(accounts=parts, dataplane=parts, hub=parts, admin_token="t")


def _routes(routes: list[Any]) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):  # FastAPI's wrapper of an included router
            found += _routes(route.original_router.routes)
    return found


def test_every_api_route_parses_bodies_strictly_and_documents_its_errors() -> None:
    """Guards routers added later: each /v1 and /admin/v1 route gets the strict edge."""
    app = _stub_app()
    api_routes = [r for r in _routes(app.routes) if r.path.startswith(("/v1/", "/admin/v1/"))]
    assert len(api_routes) >= 20
    for route in api_routes:
        assert isinstance(route, OrjsonRoute), route.path
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"422", "500"} <= documented, (method, path)
            if path.startswith(("/v1/", "/admin/v1/")):
                assert {"400", "401", "404", "413"} <= documented, (method, path)
            schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)


async def test_every_api_route_refuses_unknown_query_parameters() -> None:
    app = _stub_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for route in _routes(app.routes):
            if route.path.startswith(("/login", "/logout", "/dashboard", "/docs")):
                continue
            path = route.path.replace("{", "").replace("}", "")
            token = "t" if path.startswith("/admin/") else DATA_KEY
            for method in route.methods:
                r = await client.request(
                    method, f"{path}?zz_unknown=1", headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 422, (method, path, r.text)
                assert "'zz_unknown'" in r.json()["error"]["message"]
