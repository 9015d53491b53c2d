"""Admin routes that record tier, billing and delete events (real control database)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.middleware import RequestContext
from api.routes import admin_clients, admin_encryption, admin_events
from api.services import AuditVerify, Services, ServicesApp
from coordinator.accounts import Accounts, IssueApiKey
from eventlog.hashchain import ChainReport, Mismatch

pytestmark = pytest.mark.integration

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PEPPER = b"route-pepper-0123456789abcdef"


class FakeDataPlane:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_tenant(self, tenant: str) -> None:
        self.deleted.append(tenant)


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    accounts = Accounts(tmp_path / "control.sqlite3", PEPPER, cache_size=100)
    yield accounts
    asyncio.run(accounts.close())


@pytest.fixture
def dataplane() -> FakeDataPlane:
    return FakeDataPlane()


def build_app(
    accounts: Accounts, dataplane: FakeDataPlane, audit_verify: AuditVerify | None = None
) -> FastAPI:
    services = Services(
        accounts=accounts,
        dataplane=dataplane,
        hub=None,
        history=None,
        metrics=None,
        admin_token=TOKEN.encode(),
        audit_verify=audit_verify,
    )
    app = ServicesApp(services)
    install_error_handlers(app)
    app.include_router(admin_clients.router)
    app.include_router(admin_events.router)
    app.include_router(admin_encryption.router)
    app.add_middleware(RequestContext, max_body_bytes=1 << 20)
    return app


@pytest.fixture
def app(accounts: Accounts, dataplane: FakeDataPlane) -> FastAPI:
    return build_app(accounts, dataplane)


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def new_client(http: TestClient) -> str:
    r = http.post("/admin/v1/clients", json={"name": "Acme", "email": "o@acme.io"}, headers=AUTH)
    assert r.status_code == 201, r.text
    return str(r.json()["client_id"])


def events(http: TestClient, **params: object) -> list[dict]:
    r = http.get("/admin/v1/events", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def test_tier_change_records_one_event_and_is_idempotent(http: TestClient) -> None:
    cid = new_client(http)
    body = {"tier": "premium", "reason": "annual contract"}
    r = http.post(f"/admin/v1/clients/{cid}/tier", json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["tier"] == "premium"
    again = http.post(f"/admin/v1/clients/{cid}/tier", json=body, headers=AUTH)
    assert again.status_code == 200
    # A reason is required: without one (or a blank one) nothing changes.
    for reasonless in ({"tier": "standard"}, {"tier": "standard", "reason": "  "}):
        r = http.post(f"/admin/v1/clients/{cid}/tier", json=reasonless, headers=AUTH)
        assert r.status_code == 422, r.text
    changes = events(http, type="client.tier_changed")
    assert [e["data"] for e in changes] == [
        {"from_tier": "free", "to_tier": "premium", "reason": "annual contract"}
    ]
    assert [e["schema_version"] for e in changes] == [2]
    assert http.get(f"/admin/v1/clients/{cid}", headers=AUTH).json()["tier"] == "premium"
    bad = {"tier": "gold", "reason": "x"}
    assert http.post(f"/admin/v1/clients/{cid}/tier", json=bad, headers=AUTH).status_code == 422
    gone = http.post(
        "/admin/v1/clients/cnope/tier", json={"tier": "free", "reason": "x"}, headers=AUTH
    )
    assert gone.status_code == 404


def test_billing_returns_the_recorded_event(http: TestClient) -> None:
    cid = new_client(http)
    body = {
        "kind": "payment_failed",
        "amount_cents": 1250,
        "currency": "EUR",
        "reference": "P-9",
        "reason": "card declined, entered by hand",
    }
    r = http.post(f"/admin/v1/clients/{cid}/billing", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["type"] == "billing.payment_failed" and event["client_id"] == cid
    assert event["data"]["amount_cents"] == 1250 and event["actor"] == "admin"
    assert event["data"]["reason"] == "card declined, entered by hand"
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
    assert events(http, client_id=cid)[-1] == event
    for bad in (
        {**body, "currency": "eur"},
        {**body, "amount_cents": -1},
        {**body, "kind": "refund"},
        {**body, "extra": 1},
        {k: v for k, v in body.items() if k != "reason"},
    ):
        r = http.post(f"/admin/v1/clients/{cid}/billing", json=bad, headers=AUTH)
        assert r.status_code == 422, bad
    assert len(events(http, client_id=cid)) == 2  # a failed request changes nothing


def test_delete_stops_keys_at_once_and_removes_data(
    http: TestClient, accounts: Accounts, dataplane: FakeDataPlane
) -> None:
    cid = new_client(http)
    issued = asyncio.run(accounts.handle(IssueApiKey(cid, ("read",))))
    assert asyncio.run(accounts.authenticate(issued.api_key)) is not None  # now cached
    assert http.delete(f"/admin/v1/clients/{cid}", headers=AUTH).status_code == 422  # no reason
    r = http.delete(f"/admin/v1/clients/{cid}", params={"reason": "contract ended"}, headers=AUTH)
    assert r.status_code == 204
    assert asyncio.run(accounts.authenticate(issued.api_key)) is None
    assert dataplane.deleted == [cid]
    assert http.get(f"/admin/v1/clients/{cid}", headers=AUTH).status_code == 404
    # Repeating retries the data removal without a second event.
    again = http.request(
        "DELETE", f"/admin/v1/clients/{cid}", json={"reason": "retry removal"}, headers=AUTH
    )
    assert again.status_code == 204
    assert dataplane.deleted == [cid, cid]
    deleted = events(http, type="client.deleted")
    assert [e["data"]["reason"] for e in deleted] == ["contract ended"]
    receipt = deleted[0]["data"]["receipt"]
    assert receipt["files"] == [] and receipt["data_key_ids"] == []  # no fleet, no key here
    shown = http.get(f"/admin/v1/clients/{cid}/deletion-receipt", headers=AUTH)
    assert shown.status_code == 200, shown.text
    assert shown.json()["event_seq"] == deleted[0]["seq"]
    assert shown.json()["chain_head_seq"] == deleted[0]["seq"] - 1
    gone = http.delete("/admin/v1/clients/cnope", params={"reason": "x"}, headers=AUTH)
    assert gone.status_code == 404
    # No receipt for a client that exists or never did.
    alive = new_client(http)
    for other in (alive, "cnope"):
        missing = http.get(f"/admin/v1/clients/{other}/deletion-receipt", headers=AUTH)
        assert missing.status_code == 404


def test_audit_verify_uses_the_configured_check(
    http: TestClient, accounts: Accounts, dataplane: FakeDataPlane
) -> None:
    new_client(http)
    r = http.get("/admin/v1/audit/verify", headers=AUTH)
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["events"] == 1

    async def failing() -> ChainReport:
        return ChainReport(False, 1, "ab" * 32, [Mismatch(1, "audit_log differs from the replay")])

    with TestClient(build_app(accounts, dataplane, audit_verify=failing)) as configured:
        r = configured.get("/admin/v1/audit/verify", headers=AUTH)
    assert r.json() == {
        "ok": False,
        "events": 1,
        "head_hash": "ab" * 32,
        "mismatches": [{"seq": 1, "reason": "audit_log differs from the replay"}],
    }
