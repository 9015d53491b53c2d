"""Admin routes over HTTP against a real control database in tmp_path."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.middleware import RequestContext
from api.routes import admin_clients, admin_events
from api.services import Services, ServicesApp
from coordinator.accounts import Accounts

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEPPER = b"route-pepper-0123456789abcdef"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "control.sqlite3"


@pytest.fixture
def accounts(db: Path) -> Iterator[Accounts]:
    accounts = Accounts(db, PEPPER, cache_size=100)
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


def create(http: TestClient, **body: object) -> dict:
    r = http.post(
        "/admin/v1/clients", json={"name": "Acme", "email": "ops@acme.io", **body}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    return r.json()


def assert_error(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


def test_admin_routes_need_the_admin_token(http: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        assert_error(http.get("/admin/v1/clients", headers=headers), 401, "unauthorized")
        assert_error(http.post("/admin/v1/clients", json={}, headers=headers), 401, "unauthorized")


def test_data_plane_keys_do_not_work_on_admin_routes(http: TestClient) -> None:
    client = create(http)
    key = http.post(
        f"/admin/v1/clients/{client['client_id']}/keys", json={"scopes": ["manage"]}, headers=AUTH
    )
    r = http.get("/admin/v1/clients", headers={"Authorization": f"Bearer {key.json()['api_key']}"})
    assert_error(r, 401, "unauthorized")


def test_create_get_and_list_clients(http: TestClient) -> None:
    body = create(http, tier="premium")
    assert set(body) == {"client_id", "name", "email", "tier", "status", "created_at"}
    assert re.fullmatch(r"c[0-9a-f]{16}", body["client_id"])
    assert (body["tier"], body["status"]) == ("premium", "active")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["created_at"])
    assert create(http)["tier"] == "free"
    got = http.get(f"/admin/v1/clients/{body['client_id']}", headers=AUTH)
    # without metering or cold storage wired in, usage has nothing to report yet
    no_usage = {"last_24h": None, "storage": None}
    assert got.status_code == 200 and got.json() == {**body, "usage": no_usage}
    listed = http.get("/admin/v1/clients", headers=AUTH).json()["clients"]
    assert listed[0]["client_id"] == body["client_id"] and len(listed) == 2
    assert {k: listed[0][k] for k in body} == body


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Acme", "email": "ops@acme.io", "plan": "gold"},
        {"name": "Acme", "email": "not-an-email"},
        {"name": "Acme", "email": "ops@acme.io", "tier": "platinum"},
        {"name": "", "email": "ops@acme.io"},
        {"name": "   ", "email": "ops@acme.io"},
        {"email": "ops@acme.io"},
    ],
)
def test_invalid_client_bodies_are_422_and_change_nothing(http: TestClient, body: dict) -> None:
    assert_error(http.post("/admin/v1/clients", json=body, headers=AUTH), 422, "invalid")
    assert http.get("/admin/v1/clients", headers=AUTH).json() == {"clients": []}
    assert http.get("/admin/v1/events", headers=AUTH).json()["events"] == []


def test_malformed_json_is_400(http: TestClient) -> None:
    r = http.post(
        "/admin/v1/clients", content=b"{nope", headers={**AUTH, "content-type": "application/json"}
    )
    assert_error(r, 400, "bad_request")


def test_unknown_client_is_404(http: TestClient) -> None:
    for path in (
        "/admin/v1/clients/c0000000000000000",
        "/admin/v1/clients/NOT..valid",
        "/admin/v1/clients/c0000000000000000/keys",
    ):
        assert_error(http.get(path, headers=AUTH), 404, "not_found")
    r = http.post(
        "/admin/v1/clients/c0000000000000000/keys", json={"scopes": ["read"]}, headers=AUTH
    )
    assert_error(r, 404, "not_found")


def test_key_lifecycle(http: TestClient, accounts: Accounts, db: Path) -> None:
    client_id = create(http)["client_id"]
    r = http.post(
        f"/admin/v1/clients/{client_id}/keys",
        json={"scopes": ["read", "write"], "label": "ingest"},
        headers=AUTH,
    )
    assert r.status_code == 201 and set(r.json()) == {"key_id", "api_key", "expires_at"}
    key_id, api_key = r.json()["key_id"], r.json()["api_key"]
    assert api_key.startswith(f"vp_{key_id}_")
    listed = http.get(f"/admin/v1/clients/{client_id}/keys", headers=AUTH)
    assert listed.status_code == 200
    assert listed.json() == {
        "keys": [
            {
                "key_id": key_id,
                "label": "ingest",
                "scopes": ["read", "write"],
                "created_at": listed.json()["keys"][0]["created_at"],
                "revoked_at": None,
                # The free tier's maximum lifetime applies when none is asked for.
                "expires_at": r.json()["expires_at"],
                "allowed_cidrs": [],
                "last_used_at": None,
            }
        ]
    }
    secret = api_key.split("_", 2)[2]
    assert secret not in listed.text
    events = http.get("/admin/v1/events", headers=AUTH)
    assert secret not in events.text
    # The key works on the data plane's check until revoked, then fails at once.
    portal_check = http.portal.call  # type: ignore[union-attr]
    assert portal_check(accounts.authenticate, api_key) is not None
    r = http.delete(f"/admin/v1/clients/{client_id}/keys/{key_id}", headers=AUTH)
    assert r.status_code == 204 and r.content == b""
    assert portal_check(accounts.authenticate, api_key) is None
    revoked = http.get(f"/admin/v1/clients/{client_id}/keys", headers=AUTH).json()["keys"][0]
    assert revoked["revoked_at"] is not None
    assert (
        http.delete(f"/admin/v1/clients/{client_id}/keys/{key_id}", headers=AUTH).status_code == 204
    )
    other = create(http)["client_id"]
    r = http.delete(f"/admin/v1/clients/{other}/keys/{key_id}", headers=AUTH)
    assert_error(r, 404, "not_found")
    raw = db.read_bytes() + db.with_name(db.name + "-wal").read_bytes()
    assert secret.encode() not in raw


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": []},
        {"scopes": ["read", "admin"]},
        {"scopes": ["read"], "secret": "mine"},
        {"scopes": ["read"], "label": ""},
        {"scopes": ["read"], "label": "x" * 101},
        {},
    ],
)
def test_invalid_key_bodies_are_422(http: TestClient, body: dict) -> None:
    client_id = create(http)["client_id"]
    assert_error(
        http.post(f"/admin/v1/clients/{client_id}/keys", json=body, headers=AUTH), 422, "invalid"
    )
    assert http.get(f"/admin/v1/clients/{client_id}/keys", headers=AUTH).json() == {"keys": []}


def test_events_page_and_filter(http: TestClient) -> None:
    a, b = create(http)["client_id"], create(http)["client_id"]
    http.post(f"/admin/v1/clients/{a}/keys", json={"scopes": ["read"]}, headers=AUTH)
    page = http.get("/admin/v1/events", params={"limit": 2}, headers=AUTH).json()
    assert [e["seq"] for e in page["events"]] == [1, 2] and page["next_after_seq"] == 2
    event = page["events"][0]
    assert set(event) == {
        "seq",
        "event_id",
        "type",
        "schema_version",
        "occurred_at",
        "actor",
        "client_id",
        "data",
        "prev_hash",
        "hash",
    }
    assert event["prev_hash"] == "0" * 64 and event["actor"] == "admin"
    rest = http.get("/admin/v1/events", params={"after_seq": 2}, headers=AUTH).json()
    assert [e["type"] for e in rest["events"]] == ["api_key.issued"] and rest["next_after_seq"] == 3
    empty = http.get("/admin/v1/events", params={"after_seq": 3}, headers=AUTH).json()
    assert empty == {"events": [], "next_after_seq": 3}
    only_b = http.get("/admin/v1/events", params={"client_id": b}, headers=AUTH).json()["events"]
    assert [e["seq"] for e in only_b] == [2]
    issued = http.get("/admin/v1/events", params={"type": "api_key.issued"}, headers=AUTH).json()
    assert [e["client_id"] for e in issued["events"]] == [a]
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"after_seq": -1},
        {"type": "nope"},
        {"client_id": "../x"},
    ):
        assert_error(http.get("/admin/v1/events", params=params, headers=AUTH), 422, "invalid")


def test_audit_verify_reports_tampering(http: TestClient, db: Path) -> None:
    for _ in range(3):
        create(http)
    report = http.get("/admin/v1/audit/verify", headers=AUTH).json()
    head = http.get("/admin/v1/events", params={"after_seq": 2}, headers=AUTH).json()["events"][0]
    assert report == {"ok": True, "events": 3, "head_hash": head["hash"], "mismatches": []}
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER events_no_update")
    conn.execute("""UPDATE events SET actor = 'mallory' WHERE seq = 2""")
    conn.close()
    report = http.get("/admin/v1/audit/verify", headers=AUTH).json()
    assert report["ok"] is False and [m["seq"] for m in report["mismatches"]] == [2]


def test_openapi_describes_the_admin_routes(http: TestClient) -> None:
    spec = http.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/admin/v1/clients",
        "/admin/v1/clients/{client_id}",
        "/admin/v1/clients/{client_id}/keys",
        "/admin/v1/clients/{client_id}/keys/{key_id}",
        "/admin/v1/events",
        "/admin/v1/audit/verify",
    ):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    assert schemas["CreateClientRequest"]["additionalProperties"] is False
    assert schemas["CreateClientRequest"]["examples"]


def test_internationalised_contact_emails_are_accepted_unaddressable_ones_refused(
    http: TestClient,
) -> None:
    ok = http.post(
        "/admin/v1/clients", json={"name": "J", "email": "jürgen@bücher.example"}, headers=AUTH
    )
    assert ok.status_code == 201 and ok.json()["email"] == "jürgen@bücher.example"
    label = "x" * 64  # over the 63 characters a DNS label may have
    r = http.post("/admin/v1/clients", json={"name": "K", "email": f"k@{label}.com"}, headers=AUTH)
    assert_error(r, 422, "invalid")
    assert "IDNA" in r.json()["error"]["message"]
    assert len(http.get("/admin/v1/clients", headers=AUTH).json()["clients"]) == 1
