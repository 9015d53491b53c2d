"""120 simulated days of scheduled backups against the real admin API (in process, fake clock).

The scheduler drives the admin API through httpx's ASGI transport with its own
token; backups really copy tenant files (hot, or cold for a paused client) into a
local backup store. Checked: one backup a day for every client with changes, the
tier's retention, a paused client's backups kept, every backup and prune an event,
signed log heads in the manifests, weekly restore drills that pass and reach the
census.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import coordinator.accounts.uow as uow_module
from api.app import create_app
from coordinator.accounts import Accounts, CreateClient, RecordUsage
from coordinator.backups import BackupService
from coordinator.census import CensusTaker, archive_path
from coordinator.dataplane import DataPlane, Limits
from coordinator.hub import WorkerHub
from coordinator.pause import PauseService
from coordinator.router import TenantRouter
from coordinator.tiers import backup_retention
from eventlog.anchors import HeadAnchorer, check_anchors, signature_ok, signing_key
from scheduler.admin_client import AdminClient
from scheduler.service import SchedulerService
from tests.integration.test_scheduler_year import LocalTenantFiles, SimClock
from workers.backup_files import backup_cold, backup_owned, restore_owned
from workers.backup_store import LocalBackupStore
from workers.collection_spec import parse_collection_spec
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 1, tzinfo=UTC)
DAYS = 120
TOKEN = "scheduler-token-for-the-simulated-backups"
ANCHOR_SECRET = "anchor-secret-for-the-simulated-backups"


class LocalTenantBackups:
    """The worker-side backup and restore, run directly on the test's directories."""

    def __init__(self, hot: Path, cold: Path, store: LocalBackupStore) -> None:
        self.hot, self.cold, self.store = hot, cold, store

    async def backup(self, tenant: str, request: dict[str, Any], paused: bool) -> dict[str, Any]:
        if paused:
            return await asyncio.to_thread(
                backup_cold, self.hot, self.cold, tenant, self.store, request
            )

        def run() -> dict[str, Any]:
            tenant_store = TenantStore.open(self.hot, tenant, 1 << 30)
            try:
                return backup_owned(tenant_store, self.store, request)
            finally:
                tenant_store.close()

        return await asyncio.to_thread(run)

    async def restore(self, tenant: str, request: dict[str, Any]) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            tenant_store = TenantStore.open(self.hot, tenant, 1 << 30)
            try:
                return restore_owned(tenant_store, self.store, request)
            finally:
                tenant_store.close()

        return await asyncio.to_thread(run)


def _seed(hot: Path, tenant: str, day: int) -> None:
    """Write a few vectors (the day's changes) into the tenant's hot copy."""
    store = TenantStore.open(hot, tenant, 1 << 30)
    try:
        if "docs" not in store.collection_names():
            spec = {"collection": "docs", "dimension": 4, "metric": "l2", "index": "flat"}
            store.create_collection(parse_collection_spec(spec))
        rng = np.random.default_rng(day)
        ids = [f"d{day}-{i}" for i in range(3)]
        store.collection("docs").upsert(ids, [None] * 3, rng.random((3, 4), dtype=np.float32))
    finally:
        store.close()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="vp-backups-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_120_days_of_scheduled_backups(fast_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_days(fast_dir, monkeypatch))


async def _days(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimClock()
    monkeypatch.setattr(uow_module, "utc_now", clock.iso)
    hot, cold, archive = tmp / "hot", tmp / "cold", tmp / "archive"
    store = LocalBackupStore(tmp / "backups")
    accounts = Accounts(tmp / "control.sqlite3", b"p" * 32)
    hub = WorkerHub("worker-secret")
    backups = BackupService(
        accounts,
        LocalTenantBackups(hot, cold, store),
        store,
        HeadAnchorer(ANCHOR_SECRET, tmp / "anchors"),
        clock=clock,
    )
    app = create_app(
        accounts=accounts,
        dataplane=DataPlane(TenantRouter(hub, 5.0), Limits()),
        hub=hub,
        admin_token="admin-token",
        scheduler_token=TOKEN,
        pause=PauseService(accounts, LocalTenantFiles(hot, cold)),
        census=CensusTaker(accounts, archive, clock=clock),
        backups=backups,
    )
    transport = httpx.ASGITransport(app=app)
    scheduler = SchedulerService(AdminClient("http://vp.test", TOKEN, transport), clock=clock)
    admin = AdminClient("http://vp.test", "admin-token", transport)

    async def client(name: str, tier: str) -> str:
        view = await accounts.handle(CreateClient(name=name, email=f"{name}@x.test", tier=tier))
        await asyncio.to_thread(_seed, hot, view.client_id, 0)
        return view.client_id

    ids = {
        "busy_free": await client("busy_free", "free"),  # changes daily: keeps 7
        "busy_standard": await client("busy_standard", "standard"),  # keeps 30
        "busy_premium": await client("busy_premium", "premium"),  # keeps 90
        "idle_free": await client("idle_free", "free"),  # stops day 30, auto-paused day 44
        "sleeper": await client("sleeper", "standard"),  # paused by hand on day 50
    }
    names = {v: k for k, v in ids.items()}
    drills = 0
    for day in range(DAYS):
        clock.now = START + timedelta(days=day)
        if day > 0:  # the day that ended: usage, and the changes it stands for
            for name, cid in ids.items():
                active = name.startswith("busy") or (name == "idle_free" and day <= 30)
                active = active or (name == "sleeper" and day <= 50)
                if not active:
                    continue
                await asyncio.to_thread(_seed, hot, cid, day)
                period = (
                    (START + timedelta(days=day - 1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    clock.iso(),
                )
                await accounts.handle(
                    RecordUsage(cid, period[0], period[1], 10, 10, 3, 3 * day, 100)
                )
        clock.now = START + timedelta(days=day, minutes=5)
        await scheduler.census_tick()
        if day == 50:
            clock.now = START + timedelta(days=day, minutes=10)
            await admin.pause(ids["sleeper"], "moving offices")
        clock.now = START + timedelta(days=day, minutes=17)
        await scheduler.hourly_tick()
        clock.now = START + timedelta(days=day, hours=1, minutes=30)
        await scheduler.backup_tick()
        await backups.idle()
        if day % 7 == 6:
            clock.now = START + timedelta(days=day, hours=3, minutes=30)
            await scheduler.drill_tick()
            drills += 1

    taken = await accounts.list_events(limit=1000, type="backup.taken")
    pruned = await accounts.list_events(limit=1000, type="backup.pruned")
    failed = await accounts.list_events(limit=1000, type="backup.failed")
    assert failed == []
    per_client: dict[str, list[str]] = {}
    for e in taken:
        per_client.setdefault(names[e.client_id or ""], []).append(e.occurred_at[:10])
    # One backup a day while a client changes; none after it stops (first one on day 0).
    for name in ("busy_free", "busy_standard", "busy_premium"):
        assert len(per_client[name]) == DAYS and len(set(per_client[name])) == DAYS, name
    assert len(per_client["idle_free"]) == 31
    assert len(per_client["sleeper"]) == 51
    # Retention per tier: the newest N daily backups are kept, the rest pruned, each an event.
    tiers = {"busy_free": "free", "busy_standard": "standard", "busy_premium": "premium"}
    tiers |= {"idle_free": "free", "sleeper": "standard"}
    for name, cid in ids.items():
        listed = await admin.backups(cid)
        keep = backup_retention(tiers[name])
        assert len(listed) == min(keep, len(per_client[name])), name
        assert all(b["status"] == "complete" for b in listed)
        stored = {b["backup_id"] for b in listed}
        made = {e.data["backup_id"] for e in taken if e.client_id == cid}
        gone = {e.data["backup_id"] for e in pruned if e.client_id == cid}
        assert made - gone == stored and not gone & stored, name
        assert all(e.actor == "scheduler" for e in pruned if e.client_id == cid)
    assert {names[e.client_id or ""] for e in pruned} == set(ids)  # each past its retention
    # The paused clients keep their backups; the sleeper's last one came from cold storage.
    sleeper = store.manifests(ids["sleeper"])
    assert sleeper[-1]["location"] == "cold" and sleeper[-1]["vectors"] == 3 * 51
    idle = store.manifests(ids["idle_free"])
    assert idle and idle[-1]["vectors"] == 3 * 31
    assert (cold / ids["idle_free"]).is_dir() and (cold / ids["sleeper"]).is_dir()
    # Every manifest carries the log head, signed with the anchor key, as it was then.
    key = signing_key(ANCHOR_SECRET).public_key()
    for cid in ids.values():
        for manifest in store.manifests(cid):
            head = manifest["head"]
            assert signature_ok(head, key), manifest["backup_id"]
            (at,) = await accounts.list_events(after_seq=head["seq"] - 1, limit=1)
            assert at.hash == head["hash"]
    # `audit verify --anchors <backup store>` checks those heads against the log.
    with contextlib.closing(sqlite3.connect(tmp / "control.sqlite3")) as conn:
        anchored = check_anchors(conn.cursor(), tmp / "backups", key)
    assert anchored.checked == sum(len(store.manifests(c)) for c in ids.values())
    assert anchored.mismatches == [] and anchored.last_anchor is not None
    # Weekly drills passed, each an event, and the census reports the latest.
    drill_events = await accounts.list_events(limit=1000, type="backup.drill_completed")
    assert len(drill_events) == drills and all(e.data["ok"] for e in drill_events)
    assert all(e.data["clients"] == 5 for e in drill_events)
    last_census = (START + timedelta(days=DAYS - 1)).date().isoformat()
    header = json.loads(
        gzip.decompress(archive_path(archive, last_census).read_bytes()).splitlines()[0]
    )
    assert header["restore_drill"]["ok"] is True
    assert (await accounts.verify_chain()).ok
    await admin.close()
    await scheduler.admin.close()
    await accounts.close()
