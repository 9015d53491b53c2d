"""The lean admin path answers tier changes and billing records as the routes do.

Two apps over one control database: the reference (the FastAPI routes alone) and
the same app with ``LeanAdmin`` in front. Each request is sent to both; the
answers must match byte for byte where the state is the same, errors included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import StrictQuery
from api.errors import install_error_handlers
from api.lean_admin import LeanAdmin, lean_admin_routes
from api.middleware import RequestContext
from api.routes import admin_clients, admin_events
from api.services import Services, ServicesApp
from coordinator.accounts import Accounts
from coordinator.accounts.uow import SqliteUnitOfWork

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
SCHEDULER = "scheduler-token-for-tests-012345"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEPPER = b"route-pepper-0123456789abcdef"


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    accounts = Accounts(tmp_path / "control.sqlite3", PEPPER, cache_size=100)
    yield accounts
    asyncio.run(accounts.close())


class _Reached:
    """Notes the paths of the requests that went past the lean path to the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"].state.reached.append(scope["path"])
        await self.app(scope, receive, send)


def _app(accounts: Accounts, lean: bool) -> FastAPI:
    # Only the accounts and the tokens are used by these routes.
    services = Services(
        accounts=accounts,
        dataplane=None,
        hub=None,
        history=None,
        metrics=None,
        admin_token=TOKEN.encode(),
        scheduler_token=SCHEDULER.encode(),
    )
    app = ServicesApp(services)
    app.state.reached = []
    install_error_handlers(app)
    # As api.app.create_app includes them: an unknown query parameter is a 422.
    app.include_router(admin_clients.router, dependencies=[StrictQuery])
    app.include_router(admin_events.router, dependencies=[StrictQuery])
    if lean:
        app.add_middleware(_Reached)  # inside LeanAdmin: what the routes were handed
        app.add_middleware(LeanAdmin, routes=lean_admin_routes(admin_clients.router))
    app.add_middleware(RequestContext, max_body_bytes=1 << 20)
    return app


@pytest.fixture
def reference(accounts: Accounts) -> Iterator[TestClient]:
    with TestClient(_app(accounts, lean=False)) as client:
        yield client


@pytest.fixture
def lean(accounts: Accounts) -> Iterator[TestClient]:
    with TestClient(_app(accounts, lean=True)) as client:
        yield client


@pytest.fixture
def client_id(reference: TestClient) -> str:
    body = {"name": "Acme", "email": "ops@acme.io"}
    r = reference.post("/admin/v1/clients", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return str(r.json()["client_id"])


def events(http: TestClient, type_: str) -> list[dict]:
    r = http.get("/admin/v1/events", params={"type": type_}, headers=AUTH)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def _post(http: TestClient, path: str, body: object, headers: dict[str, str] | None = None):
    return http.post(path, content=orjson.dumps(body), headers=headers or AUTH_JSON)


AUTH_JSON = {**AUTH, "Content-Type": "application/json"}


def test_a_tier_change_answers_byte_for_byte_as_the_route(
    reference: TestClient, lean: TestClient, client_id: str
) -> None:
    path = f"/admin/v1/clients/{client_id}/tier"
    premium = {"tier": "premium", "reason": "annual contract"}
    by_route = _post(reference, path, premium)
    _post(reference, path, {"tier": "free", "reason": "back"})
    by_lean = _post(lean, path, premium)
    assert lean.app.state.reached == []  # answered by the lean path, not the route
    assert by_lean.status_code == by_route.status_code == 200
    assert by_lean.content == by_route.content
    assert by_lean.headers["content-type"] == by_route.headers["content-type"]
    assert by_lean.headers["content-length"] == by_route.headers["content-length"]
    # The same tier again changes nothing, as through the route.
    again = _post(lean, path, premium)
    assert again.content == by_route.content
    changes = events(reference, "client.tier_changed")
    assert [(e["data"]["to_tier"], e["actor"]) for e in changes] == [
        ("premium", "admin"),
        ("free", "admin"),
        ("premium", "admin"),
    ]
    assert changes[0]["data"] == changes[2]["data"]


def test_a_billing_record_answers_with_the_recorded_event(
    reference: TestClient, lean: TestClient, client_id: str
) -> None:
    path = f"/admin/v1/clients/{client_id}/billing"
    body = {
        "kind": "invoice_issued",
        "amount_cents": 4900,
        "currency": "EUR",
        "reference": "INV-1",
        "reason": "monthly",
    }
    by_route = _post(reference, path, body)
    by_lean = _post(lean, path, body)
    assert lean.app.state.reached == []
    assert by_lean.status_code == by_route.status_code == 201
    assert by_lean.headers["content-type"] == by_route.headers["content-type"]
    route_event, lean_event = by_route.json(), by_lean.json()
    assert list(lean_event) == list(route_event)  # same fields, same order
    recorded = events(reference, "billing.invoice_issued")
    assert recorded == [route_event, lean_event]
    assert lean_event["seq"] == route_event["seq"] + 1
    assert lean_event["prev_hash"] == route_event["hash"]
    assert lean_event["data"] == route_event["data"]
    # Byte for byte too, but for the fields that differ from one event to the next.
    expected = by_route.content.decode()
    for key in ("seq", "event_id", "occurred_at", "prev_hash", "hash"):
        was, now = orjson.dumps(route_event[key]).decode(), orjson.dumps(lean_event[key]).decode()
        expected = expected.replace(f'"{key}":{was}', f'"{key}":{now}')
    assert by_lean.content.decode() == expected


def _same_error(a, b) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    ea, eb = a.json()["error"], b.json()["error"]
    assert (ea["code"], ea["message"]) == (eb["code"], eb["message"])
    assert ea["request_id"] == a.headers["x-request-id"]
    assert a.headers.get("retry-after") == b.headers.get("retry-after")


@pytest.mark.parametrize(
    ("suffix", "body", "headers", "status"),
    [
        # Answered by the lean path itself (domain errors after validation).
        ("tier", {"tier": "premium", "reason": "x"}, AUTH_JSON, 404),
        # Handed to the route: body, token, query string and content type.
        ("tier", {"tier": "gold", "reason": "x"}, AUTH_JSON, 422),
        ("tier", {"tier": "premium"}, AUTH_JSON, 422),
        ("tier", {"tier": "premium", "reason": "x", "extra": 1}, AUTH_JSON, 422),
        ("tier", ["premium"], AUTH_JSON, 422),
        ("billing", {"kind": "invoice_issued", "amount_cents": "5"}, AUTH_JSON, 422),
        ("tier", {"tier": "premium", "reason": "x"}, {"Content-Type": "application/json"}, 401),
        (
            "tier",
            {"tier": "premium", "reason": "x"},
            {"Authorization": "Bearer wrong-token", "Content-Type": "application/json"},
            401,
        ),
    ],
)
def test_errors_are_the_routes_own(
    reference: TestClient,
    lean: TestClient,
    suffix: str,
    body: object,
    headers: dict[str, str],
    status: int,
) -> None:
    path = f"/admin/v1/clients/c{'0' * 16}/{suffix}"
    by_route = _post(reference, path, body, headers)
    by_lean = _post(lean, path, body, headers)
    assert by_route.status_code == status, by_route.text
    _same_error(by_lean, by_route)
    # A domain error is the lean path's to answer; anything else is the route's.
    assert lean.app.state.reached == ([] if status == 404 else [path])


def test_malformed_json_query_strings_and_domain_refusals_match(
    reference: TestClient, lean: TestClient, client_id: str
) -> None:
    base = f"/admin/v1/clients/{client_id}"
    for http in (reference, lean):
        assert http.post(f"{base}/tier", content=b"{", headers=AUTH_JSON).status_code == 400
    pairs = [
        (f"{base}/tier?x=1", {"tier": "premium", "reason": "x"}),
        # Valid for the model, refused by the domain: not an ISO 4217 code.
        (
            f"{base}/billing",
            {
                "kind": "invoice_issued",
                "amount_cents": 1,
                "currency": "eur",
                "reference": "R",
                "reason": "x",
            },
        ),
    ]
    for path, body in pairs:
        _same_error(_post(lean, path, body), _post(reference, path, body))
    assert events(reference, "billing.invoice_issued") == []
    assert events(reference, "client.tier_changed") == []


def test_the_scheduler_token_is_recorded_as_the_scheduler(
    lean: TestClient, reference: TestClient, client_id: str
) -> None:
    headers = {"Authorization": f"Bearer {SCHEDULER}", "Content-Type": "application/json"}
    r = _post(
        lean, f"/admin/v1/clients/{client_id}/tier", {"tier": "standard", "reason": "x"}, headers
    )
    assert r.status_code == 200, r.text
    assert [e["actor"] for e in events(reference, "client.tier_changed")] == ["scheduler"]


def test_the_request_log_names_the_route(
    lean: TestClient, client_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vectorpanda.requests"):
        r = _post(lean, f"/admin/v1/clients/{client_id}/tier", {"tier": "premium", "reason": "x"})
    assert r.status_code == 200
    lines = [
        orjson.loads(rec.getMessage()) for rec in caplog.records if rec.name.endswith("requests")
    ]
    assert lines[-1]["route"] == "/admin/v1/clients/{client_id}/tier"
    assert lines[-1]["status"] == 200
    assert lines[-1]["request_id"] == r.headers["x-request-id"]


def test_an_unwritable_store_is_the_same_503(
    reference: TestClient, lean: TestClient, accounts: Accounts, client_id: str
) -> None:
    assert isinstance(accounts.uow, SqliteUnitOfWork)
    engine = accounts.uow._engine

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    engine.dispose()
    path = f"/admin/v1/clients/{client_id}/tier"
    body = {"tier": "premium", "reason": "x"}
    by_lean = _post(lean, path, body)
    assert lean.app.state.reached == []  # refused by the store, answered by the lean path
    by_route = _post(reference, path, body)
    assert by_route.status_code == 503, by_route.text
    _same_error(by_lean, by_route)
    assert "read-only" in by_lean.json()["error"]["message"]


def test_a_chunked_body_over_the_cap_is_the_routes_413(
    reference: TestClient, lean: TestClient, client_id: str
) -> None:
    path = f"/admin/v1/clients/{client_id}/tier"

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"tier": "premium", "reason": "'
        yield b"x" * (1 << 20)
        yield b'"}'

    by_route = reference.post(path, content=chunks(), headers=AUTH_JSON)
    by_lean = lean.post(path, content=chunks(), headers=AUTH_JSON)
    assert by_route.status_code == 413, by_route.text
    _same_error(by_lean, by_route)
    assert lean.app.state.reached == [path]
