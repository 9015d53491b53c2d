"""An unwritable control database: admin actions answer 503 unavailable and change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.errors import install_error_handlers
from api.middleware import RequestContext
from api.routes import admin_clients, admin_events
from api.services import Services, ServicesApp
from coordinator.accounts import Accounts, CreateClient, StoreUnavailable
from coordinator.accounts.uow import SqliteUnitOfWork

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEPPER = b"route-pepper-0123456789abcdef"


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    accounts = Accounts(tmp_path / "control.sqlite3", PEPPER, cache_size=100)
    yield accounts
    asyncio.run(accounts.close())


@pytest.fixture
def http(accounts: Accounts) -> Iterator[TestClient]:
    # Only the accounts are used by these routes.
    services = Services(
        accounts=accounts,
        dataplane=None,
        hub=None,
        history=None,
        metrics=None,
        admin_token=TOKEN.encode(),
    )
    app = ServicesApp(services)
    install_error_handlers(app)
    app.include_router(admin_clients.router)
    app.include_router(admin_events.router)
    app.add_middleware(RequestContext, max_body_bytes=1 << 20)
    with TestClient(app) as client:
        yield client


def make_read_only(accounts: Accounts) -> None:
    """Every new connection refuses writes, as SQLite does on a read-only file."""
    assert isinstance(accounts.uow, SqliteUnitOfWork)
    engine = accounts.uow._engine

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    engine.dispose()


def test_admin_writes_answer_503_and_record_nothing(http: TestClient, accounts: Accounts) -> None:
    r = http.post("/admin/v1/clients", json={"name": "Acme", "email": "a@acme.io"}, headers=AUTH)
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]
    events_before = http.get("/admin/v1/events", headers=AUTH).json()["events"]

    make_read_only(accounts)
    actions = [
        ("/admin/v1/clients", {"name": "Beta", "email": "b@beta.io"}),
        (f"/admin/v1/clients/{client_id}/keys", {"scopes": ["read"]}),
        (f"/admin/v1/clients/{client_id}/tier", {"tier": "premium", "reason": "upgrade"}),
    ]
    for path, body in actions:
        r = http.post(path, json=body, headers=AUTH)
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "unavailable"
        assert "control-plane store cannot be written" in error["message"]
        assert "read-only" in error["message"] and "nothing was changed" in error["message"]
        assert r.headers["retry-after"]

    # reads still work, and show that nothing changed
    clients = http.get("/admin/v1/clients", headers=AUTH).json()["clients"]
    assert [c["client_id"] for c in clients] == [client_id]
    assert clients[0]["tier"] == "free"
    assert http.get("/admin/v1/events", headers=AUTH).json()["events"] == events_before


def test_write_failure_is_store_unavailable(accounts: Accounts) -> None:
    make_read_only(accounts)
    with pytest.raises(StoreUnavailable, match="read-only"):
        asyncio.run(accounts.handle(CreateClient(name="X", email="x@x.io", actor="admin")))
