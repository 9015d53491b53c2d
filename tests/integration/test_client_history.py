"""A client as of any moment (issue 17), against a generated year of admin actions.

The year is made through the real account handlers on a real SQLite control
database, with the control plane's clock (every event's ``occurred_at``)
simulated. ``GET /admin/v1/clients/{id}/history?at=`` is asked through the
real FastAPI app (httpx's ASGI transport) for 1,000 random moments, and every
answer is compared with a naive fold this test does itself over the same
events. Then ``/changes``, the error cases and ``vectorpanda audit state`` /
``audit changes``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

import coordinator.accounts.uow as uow_module
from api.app import create_app
from coordinator.accounts import (
    Accounts,
    ChangeTier,
    CreateClient,
    DeleteClient,
    IssueApiKey,
    PauseClient,
    RecordBilling,
    RecordCollectionCreated,
    RecordCollectionDeleted,
    RecordUsage,
    ResumeClient,
    RevokeApiKey,
)
from coordinator.dataplane import DataPlane, Limits
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from eventlog.records import MAX_READ_LIMIT, StoredEvent

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 1, tzinfo=UTC)
ADMIN = "admin-token-for-history"
MOMENTS = 1000
ACTORS = ("admin", "operator:alice", "operator:bob", "scheduler")
STATE_TYPES = {
    "client.created", "client.tier_changed", "client.paused", "client.resumed",
    "client.deleted", "api_key.issued", "api_key.revoked", "collection.created",
    "collection.deleted", "billing.invoice_issued", "billing.payment_received",
    "billing.payment_failed",
}  # fmt: skip


class SimClock:
    def __init__(self) -> None:
        self.now = START

    def iso(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class World:
    tmp: Path
    accounts: Accounts
    http: httpx.AsyncClient
    clock: SimClock


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in RAM when there is one: a year of fsyncs on a shared disk is slow."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="vp-history-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def world(fast_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    clock = SimClock()
    monkeypatch.setattr(uow_module, "utc_now", clock.iso)
    accounts = Accounts(fast_dir / "control.sqlite3", b"p" * 32)
    hub = WorkerHub("worker-secret")
    app = create_app(
        accounts=accounts,
        dataplane=DataPlane(TenantRouter(hub, 5.0), Limits()),
        hub=hub,
        admin_token=ADMIN,
    )
    headers = {"Authorization": f"Bearer {ADMIN}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://vp.test", headers=headers
    ) as http:
        yield World(fast_dir, accounts, http, clock)
    await accounts.close()


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def make_year(w: World, seed: int = 17) -> list[str]:
    """A year of random admin actions on five clients (one created mid-year, one deleted)."""
    rng = random.Random(seed)
    acc = w.accounts
    ids: list[str] = []
    live_keys: dict[str, list[str]] = {}
    collections: dict[str, set[str]] = {}
    paused: set[str] = set()
    deleted: set[str] = set()
    creations = {0: "Acme", 3: "Globex", 10: "Initech", 40: "Umbrella", 180: "Hooli"}
    end = START + timedelta(days=365)
    while w.clock.now < end:
        day = (w.clock.now - START).days
        for when, name in list(creations.items()):
            if day >= when:
                del creations[when]
                view = await acc.handle(
                    CreateClient(name=name, email=f"ops@{name.lower()}.test", tier="free")
                )
                ids.append(view.client_id)
                live_keys[view.client_id], collections[view.client_id] = [], set()
        live = [c for c in ids if c not in deleted]
        if live:
            cid = rng.choice(live)
            actor = rng.choice(ACTORS)
            roll = rng.random()
            if day > 300 and cid == ids[1] and cid not in deleted:
                await acc.handle(DeleteClient(cid, actor=actor, reason="contract ended"))
                deleted.add(cid)
            elif roll < 0.15:
                tier = rng.choice(["free", "standard", "premium"])
                reason = rng.choice([None, "upgrade", "downgrade"])
                await acc.handle(ChangeTier(cid, tier, actor=actor, reason=reason))
            elif roll < 0.25:
                if cid in paused:
                    await acc.handle(ResumeClient(cid, actor=actor, reason="paid up"))
                    paused.discard(cid)
                else:
                    await acc.handle(PauseClient(cid, "unpaid", actor=actor))
                    paused.add(cid)
            elif roll < 0.40:
                scopes = tuple(rng.sample(["read", "write", "manage"], rng.randint(1, 3)))
                label = rng.choice([None, "ci", "prod"])
                issued = await acc.handle(IssueApiKey(cid, scopes, label=label, actor=actor))
                live_keys[cid].append(issued.key_id)
            elif roll < 0.48 and live_keys[cid]:
                key = live_keys[cid].pop(rng.randrange(len(live_keys[cid])))
                await acc.handle(RevokeApiKey(cid, key, actor=actor))
            elif roll < 0.70:
                kind = rng.choice(["invoice_issued", "payment_received", "payment_failed"])
                await acc.handle(
                    RecordBilling(
                        cid,
                        kind,
                        rng.randrange(0, 50_000),
                        rng.choice(["EUR", "USD"]),
                        f"REF-{rng.randrange(10**6)}",
                        actor=actor,
                        reason=rng.choice([None, "monthly"]),
                    )
                )
            elif roll < 0.82:
                name = f"docs{rng.randrange(4)}"
                key_actor = f"key:{rng.randrange(16**16):016x}"
                if name in collections[cid]:
                    await acc.handle(RecordCollectionDeleted(cid, name, actor=key_actor))
                    collections[cid].discard(name)
                else:
                    dim = rng.choice([4, 384, 768])
                    cmd = RecordCollectionCreated(cid, name, dim, "cosine", "hnsw", key_actor)
                    await acc.handle(cmd)
                    collections[cid].add(name)
            else:  # noise the fold must ignore
                stamp = iso(w.clock.now)
                await acc.handle(RecordUsage(cid, stamp, stamp, 5, 3, 1, 10, 4096))
        # Some actions share a timestamp; the rest are up to a day apart.
        if rng.random() > 0.1:
            w.clock.now += timedelta(
                seconds=rng.randrange(1, 86_400), microseconds=rng.randrange(10**6)
            )
    return ids


async def all_events(acc: Accounts) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    while page := await acc.list_events(events[-1].seq if events else 0, MAX_READ_LIMIT):
        events.extend(page)
    return events


def parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def naive_state(events: list[StoredEvent], cid: str, at: datetime) -> dict[str, Any] | None:
    """The test's own fold: the expected history document, or None before the client existed."""
    doc: dict[str, Any] | None = None
    keys: dict[str, dict[str, Any]] = {}
    cols: dict[str, dict[str, Any]] = {}
    money: dict[str, dict[str, int]] = {}
    failed = 0
    for e in events:
        if e.client_id != cid or parse(e.occurred_at) > at or e.type not in STATE_TYPES:
            continue
        d = e.data
        if e.type == "client.created":
            doc = {"client_id": cid, "name": d["name"], "email": d["email"], "tier": d["tier"]}
            doc["status"] = "active"
        elif doc is None:
            continue
        elif e.type == "client.tier_changed":
            doc["tier"] = d["to_tier"]
        elif e.type in ("client.paused", "client.resumed", "client.deleted"):
            doc["status"] = {"paused": "paused", "resumed": "active", "deleted": "deleted"}[
                e.type.split(".")[1]
            ]
        elif e.type == "api_key.issued":
            keys[d["key_id"]] = {
                "key_id": d["key_id"], "scopes": d["scopes"], "label": d["label"],
                "issued_at": e.occurred_at, "issued_by": e.actor, "revoked_at": None,
                "revoked_by": None, "expires_at": d.get("expires_at"),
                "allowed_cidrs": d.get("allowed_cidrs") or [],
            }  # fmt: skip
        elif e.type == "api_key.revoked":
            keys[d["key_id"]]["revoked_at"] = e.occurred_at
            keys[d["key_id"]]["revoked_by"] = e.actor
        elif e.type == "collection.created":
            cols[d["name"]] = {
                "name": d["name"], "dimension": d["dimension"], "metric": d["metric"],
                "index": d["index"], "created_at": e.occurred_at,
            }  # fmt: skip
        elif e.type == "collection.deleted":
            del cols[d["name"]]
        else:
            row = money.setdefault(d["currency"], {"invoiced": 0, "paid": 0, "failed": 0})
            kind = {"invoice_issued": "invoiced", "payment_received": "paid"}.get(
                e.type.split(".")[1], "failed"
            )
            row[kind] += d["amount_cents"]
            failed += kind == "failed"
        doc["event_seq"], doc["event_hash"] = e.seq, e.hash
    if doc is None:
        return None
    doc["keys"] = list(keys.values())
    doc["collections"] = [cols[n] for n in sorted(cols)]
    balances = [
        {
            "currency": cur,
            "invoiced_cents": m["invoiced"],
            "paid_cents": m["paid"],
            "failed_cents": m["failed"],
            "balance_cents": m["invoiced"] - m["paid"],
        }
        for cur, m in sorted(money.items())
    ]
    doc["billing"] = {"balances": balances, "failed_payments": failed}
    return doc


OFFSETS = (timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))


def as_query(moment: datetime, rng: random.Random) -> str:
    """The moment as RFC 3339, sometimes with an offset other than Z."""
    if rng.random() < 0.3:
        return moment.astimezone(rng.choice(OFFSETS)).isoformat(timespec="microseconds")
    return iso(moment)


async def test_history_matches_a_naive_fold_at_1000_random_moments(world: World) -> None:
    w = world
    ids = await make_year(w)
    events = await all_events(w.accounts)
    assert len(events) > 400
    rng = random.Random(1)
    times = [parse(e.occurred_at) for e in events]
    moments: list[datetime] = []
    for _ in range(MOMENTS):
        if rng.random() < 0.5:
            moments.append(
                START - timedelta(days=5) + timedelta(seconds=rng.uniform(0, 380 * 86_400))
            )
        else:  # on an event's moment, or just either side of it
            moments.append(rng.choice(times) + timedelta(microseconds=rng.choice([-1, 0, 0, 1])))
    answered = missing = 0
    for moment in moments:
        cid = rng.choice(ids)
        expected = naive_state(events, cid, moment)
        r = await w.http.get(
            f"/admin/v1/clients/{cid}/history", params={"at": as_query(moment, rng)}
        )
        if expected is None:
            assert r.status_code == 404, (moment, r.text)
            assert r.json()["error"]["code"] == "not_found"
            missing += 1
        else:
            assert r.status_code == 200, r.text
            assert r.json() == expected, moment
            answered += 1
    # The moments reach both sides of creation and every kind of state.
    assert answered > 700 and missing > 50
    chain = {e.seq: e.hash for e in events}
    last = await w.http.get(
        f"/admin/v1/clients/{ids[1]}/history", params={"at": "2030-01-01T00:00:00Z"}
    )
    assert last.json()["status"] == "deleted"
    assert chain[last.json()["event_seq"]] == last.json()["event_hash"]


async def small_story(w: World) -> str:
    """Five admin actions a day apart, by named actors with reasons."""
    acc = w.accounts
    cid = (await acc.handle(CreateClient(name="Acme", email="ops@acme.test"))).client_id

    async def next_day() -> None:
        w.clock.now += timedelta(days=1)

    await next_day()
    await acc.handle(ChangeTier(cid, "premium", actor="operator:alice", reason="signed"))
    await next_day()
    await acc.handle(PauseClient(cid, "invoice overdue", actor="operator:bob"))
    await next_day()
    await acc.handle(ResumeClient(cid, actor="operator:bob", reason="paid"))
    await next_day()
    await acc.handle(ChangeTier(cid, "standard", actor="scheduler", reason="downgrade"))
    await next_day()
    await acc.handle(IssueApiKey(cid, ("read",), label="ci", actor="operator:alice"))
    return cid


def day(n: float) -> str:
    return iso(START + timedelta(days=n))


async def test_changes_name_the_field_the_actor_and_the_reason(world: World) -> None:
    cid = await small_story(world)
    http = world.http
    r = await http.get(f"/admin/v1/clients/{cid}/changes", params={"field": "tier"})
    assert r.status_code == 200, r.text
    rows = r.json()["changes"]
    assert [(c["from"], c["to"], c["actor"], c["reason"]) for c in rows] == [
        (None, "free", "admin", None),
        ("free", "premium", "operator:alice", "signed"),
        ("premium", "standard", "scheduler", "downgrade"),
    ]
    assert [c["at"] for c in rows] == [day(0), day(1), day(4)]
    assert all(c["field"] == "tier" for c in rows)

    window = {"since": day(1.5), "until": day(3.5)}
    r = await http.get(f"/admin/v1/clients/{cid}/changes", params=window)
    assert [
        (c["field"], c["from"], c["to"], c["actor"], c["reason"]) for c in r.json()["changes"]
    ] == [
        ("status", "active", "paused", "operator:bob", "invoice overdue"),
        ("status", "paused", "active", "operator:bob", "paid"),
    ]
    # since and until are inclusive: the moment of a change is inside the window.
    r = await http.get(
        f"/admin/v1/clients/{cid}/changes", params={"since": day(5), "until": day(5)}
    )
    (issued,) = r.json()["changes"]
    assert (issued["field"], issued["from"], issued["to"]) == ("keys", [], [issued["to"][0]])
    events = await all_events(world.accounts)
    assert events[issued["event_seq"] - 1].type == "api_key.issued"

    # And the state at each moment agrees with the changes.
    at = await http.get(f"/admin/v1/clients/{cid}/history", params={"at": day(2.5)})
    assert (at.json()["tier"], at.json()["status"]) == ("premium", "paused")


@pytest.mark.parametrize(
    ("route", "params", "status", "words"),
    [
        ("history", {}, 422, "at"),
        ("history", {"at": "2027-01-02"}, 422, "RFC 3339"),
        ("history", {"at": "2027-01-02T00:00:00"}, 422, "offset"),
        ("history", {"at": "next tuesday"}, 422, "RFC 3339"),
        ("history", {"at": "2027-01-02T00:00:00Z", "since": "x"}, 422, "unknown query"),
        ("history", {"at": "2026-12-31T23:59:59Z"}, 404, "not found"),
        ("changes", {"field": "colour"}, 422, "field"),
        (
            "changes",
            {"since": "2027-01-03T00:00:00Z", "until": "2027-01-02T00:00:00Z"},
            422,
            "after",
        ),
        ("changes", {"until": "2027-01-02"}, 422, "RFC 3339"),
    ],
)
async def test_bad_requests_get_the_error_format(
    world: World, route: str, params: dict[str, str], status: int, words: str
) -> None:
    cid = await small_story(world)
    r = await world.http.get(f"/admin/v1/clients/{cid}/{route}", params=params)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == ("invalid" if status == 422 else "not_found")
    assert words.lower() in error["message"].lower() and error["request_id"]


async def test_unknown_clients_and_missing_tokens(world: World) -> None:
    await small_story(world)
    at = {"at": "2027-06-01T00:00:00Z"}
    for cid in ("c0000000000000000", "Not-An-Id", "x" * 64):
        for route, params in (("history", at), ("changes", {})):
            r = await world.http.get(f"/admin/v1/clients/{cid}/{route}", params=params)
            assert r.status_code == 404, r.text
            assert r.json()["error"]["code"] == "not_found"
    anonymous = httpx.AsyncClient(transport=world.http._transport, base_url="http://vp.test")
    async with anonymous:
        r = await anonymous.get("/admin/v1/clients/c0/history", params=at)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def audit_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "vectorpanda", "audit", *args, "--data-dir", str(data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


async def test_the_cli_answers_as_the_api_does(world: World) -> None:
    cid = await small_story(world)
    at = "2027-01-03T12:00:00+01:00"
    api = (await world.http.get(f"/admin/v1/clients/{cid}/history", params={"at": at})).json()
    state = audit_cli(world.tmp, "state", "--client", cid, "--at", at, "--json")
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout) == api
    text = audit_cli(world.tmp, "state", "--client", cid, "--at", at)
    assert text.returncode == 0, text.stderr
    assert "tier premium, status paused" in text.stdout and api["event_hash"] in text.stdout

    params = {"field": "status", "since": day(1)}
    api_changes = (await world.http.get(f"/admin/v1/clients/{cid}/changes", params=params)).json()
    changes = audit_cli(
        world.tmp, "changes", "--client", cid, "--field", "status", "--since", day(1), "--json"
    )
    assert changes.returncode == 0, changes.stderr
    assert json.loads(changes.stdout) == api_changes and len(api_changes["changes"]) == 2
    text = audit_cli(world.tmp, "changes", "--client", cid)
    assert "operator:alice" in text.stdout and "(invoice overdue)" in text.stdout

    before = audit_cli(world.tmp, "state", "--client", cid, "--at", "2026-01-01T00:00:00Z")
    assert before.returncode == 1 and "no client" in before.stderr
    naive = audit_cli(world.tmp, "state", "--client", cid, "--at", "2027-01-03T00:00:00")
    assert naive.returncode != 0 and "RFC 3339" in naive.stderr
