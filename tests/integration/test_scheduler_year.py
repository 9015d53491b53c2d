"""A simulated year of scheduler ticks against the real admin API (in process, fake clock).

The control plane's clock (every event's ``occurred_at``) and the scheduler's
clock are the same simulated one; the admin API is the real FastAPI app reached
through httpx's ASGI transport with the scheduler's own token; pausing really
moves tenant files from hot to cold.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
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
from coordinator.accounts import (
    Accounts,
    CreateClient,
    RecordBilling,
    RecordUsage,
)
from coordinator.census import CensusTaker
from coordinator.dataplane import DataPlane, Limits
from coordinator.hub import WorkerHub
from coordinator.pause import PauseService
from coordinator.router import TenantRouter
from scheduler.admin_client import AdminClient
from scheduler.service import SchedulerService
from workers.collection_spec import parse_collection_spec
from workers.tenant_move import describe, move_tenant
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 1, tzinfo=UTC)
DAYS = 365
DOWN = range(150, 160)  # the scheduler is down these days: their censuses are caught up
SCHEDULER_TOKEN = "scheduler-token-for-the-simulated-year"


class SimClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def iso(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LocalTenantFiles:
    """The worker-side move, run directly on the test's directories."""

    def __init__(self, hot: Path, cold: Path) -> None:
        self.hot, self.cold = hot, cold

    async def release(self, tenant: str) -> None:
        return None

    async def move(self, tenant: str, to: str) -> dict[str, Any]:
        return await asyncio.to_thread(move_tenant, self.hot, self.cold, tenant, to, 1 << 30)

    async def describe(self, tenant: str) -> dict[str, Any]:
        return describe(self.hot, self.cold, tenant)

    async def delete_cold(self, tenant: str) -> None:
        raise AssertionError("automation must never delete cold data")


def _files(root: Path) -> set[str]:
    return {str(Path(d) / f) for d, _, fs in os.walk(root) for f in fs if not f.startswith(".")}


def _seed_hot(hot: Path, tenant: str) -> None:
    store = TenantStore.open(hot, tenant, 1 << 30)
    spec = {"collection": "docs", "dimension": 4, "metric": "l2", "index": "flat"}
    store.create_collection(parse_collection_spec(spec))
    data = np.arange(40, dtype=np.float32).reshape(10, 4)
    store.collection("docs").upsert([str(i) for i in range(10)], [None] * 10, data)
    store.close()


@pytest.fixture
def fast_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in RAM when there is one: a year of fsyncs on a shared disk is slow."""
    if not Path("/dev/shm").is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="vp-year-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_simulated_year(fast_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_year(fast_dir, monkeypatch))


async def _year(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimClock()
    monkeypatch.setattr(uow_module, "utc_now", clock.iso)
    hot, cold, archive = tmp_path / "hot", tmp_path / "cold", tmp_path / "archive"
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    hub = WorkerHub("worker-secret")
    files = LocalTenantFiles(hot, cold)

    async def figures(client_id: str, status: str) -> dict[str, Any]:
        return await files.describe(client_id)

    app = create_app(
        accounts=accounts,
        dataplane=DataPlane(TenantRouter(hub, 5.0), Limits()),
        hub=hub,
        admin_token="admin-token",
        scheduler_token=SCHEDULER_TOKEN,
        pause=PauseService(accounts, files),
        census=CensusTaker(accounts, archive, figures, clock=clock),
    )
    transport = httpx.ASGITransport(app=app)
    scheduler = SchedulerService(
        AdminClient("http://vp.test", SCHEDULER_TOKEN, transport=transport), clock=clock
    )

    async def client(name: str, tier: str) -> str:
        view = await accounts.handle(CreateClient(name=name, email=f"{name}@x.test", tier=tier))
        await asyncio.to_thread(_seed_hot, hot, view.client_id)
        return view.client_id

    ids = {
        "steady_free": await client("steady_free", "free"),  # used every day: never paused
        "idle_free": await client("idle_free", "free"),  # stops on day 30: paused day 44
        "late_free": await client("late_free", "free"),  # stops on day 300: paused day 314
        "idle_standard": await client("idle_standard", "standard"),  # idle, but paying
        "paid_late": await client("paid_late", "standard"),  # fails day 100, pays day 103
        "never_paid": await client("never_paid", "premium"),  # fails day 200: paused day 208
        "growing": await client("growing", "standard"),  # +3 % a day: no anomaly
        "spiky": await client("spiky", "standard"),  # 500x on day 250: one anomaly
    }
    newcomer = ""
    seen_cold: set[str] = set()
    seen_archive: set[str] = set()

    def daily_requests(day: int) -> dict[str, int]:
        out = {"steady_free": 50, "spiky": 50_000 if day == 250 else 100}
        out["growing"] = int(100 * 1.03**day)
        if day < 30:
            out["idle_free"] = 10
        if day < 300:
            out["late_free"] = 10
        return out

    for day in range(DAYS):
        # Usage of the day that just ended is recorded at midnight.
        clock.now = START + timedelta(days=day)
        if day > 0:
            period = (START + timedelta(days=day - 1), clock.now)
            usage = daily_requests(day - 1)
            if newcomer:
                usage["newcomer"] = 5000
            for name, n in usage.items():
                cid = newcomer if name == "newcomer" else ids[name]
                await accounts.handle(
                    RecordUsage(
                        client_id=cid,
                        period_start=period[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        period_end=period[1].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                        requests=n,
                        queries=n,
                        vectors_upserted=0,
                        vectors_stored=10,
                        bytes_stored=100,
                    )
                )
        if day == 300:  # a new client with a big first day: no anomaly
            newcomer = (
                await accounts.handle(CreateClient("newcomer", "n@x.test", "standard"))
            ).client_id
        clock.now = START + timedelta(days=day, hours=12)
        if day in (100, 200):
            who = "paid_late" if day == 100 else "never_paid"
            await accounts.handle(RecordBilling(ids[who], "payment_failed", 4900, "EUR", f"F{day}"))
        if day == 103:
            await accounts.handle(
                RecordBilling(ids["paid_late"], "payment_received", 4900, "EUR", "P103")
            )
        if day in DOWN:
            continue
        clock.now = START + timedelta(days=day, minutes=5)
        await scheduler.census_tick()
        if day % 50 == 0:
            await scheduler.census_tick()  # a second run the same day is a no-op
        clock.now = START + timedelta(days=day, minutes=17)
        await scheduler.hourly_tick()
        # Automation never deletes anything under cold or the archive.
        now_cold, now_archive = _files(cold), _files(archive)
        assert seen_cold <= now_cold and seen_archive <= now_archive
        seen_cold, seen_archive = now_cold, now_archive

    again = await scheduler.admin.take_census((START + timedelta(days=7)).date().isoformat())
    assert again["taken"] is False, "a second census for a day is a no-op"
    await scheduler.admin.close()
    events = await accounts.list_events(limit=1000, type="census.snapshot_taken")
    dates = [e.data["date"] for e in events]
    assert len(dates) == DAYS and len(set(dates)) == DAYS, "one census per day, each once"
    assert len(list((archive / "census").glob("*.jsonl.gz"))) == DAYS
    for e in events[::30]:
        blob = Path(e.data["archive"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == e.data["sha256"]
        header = json.loads(gzip.decompress(blob).splitlines()[0])
        assert header["head_hash"] == e.data["head_hash"]
        (at_head,) = await accounts.list_events(after_seq=e.data["head_seq"] - 1, limit=1)
        assert at_head.hash == e.data["head_hash"], "the census is tied to the log"
    assert (await accounts.verify_chain()).ok

    paused = await accounts.list_events(limit=1000, type="client.paused")
    names = {v: k for k, v in ids.items()}
    assert sorted(names[e.client_id or ""] for e in paused) == [
        "idle_free",
        "late_free",
        "never_paid",
    ]
    assert all(e.actor == "scheduler" and e.data["automatic"] for e in paused)
    when = {names[e.client_id or ""]: e.occurred_at[:10] for e in paused}
    assert when == {
        "idle_free": (START + timedelta(days=44)).date().isoformat(),
        "late_free": (START + timedelta(days=314)).date().isoformat(),
        "never_paid": (START + timedelta(days=208)).date().isoformat(),
    }
    for name in when:
        assert (cold / ids[name]).is_dir() and not (hot / ids[name]).exists()
    anomalies = await accounts.list_events(limit=1000, type="billing.anomaly_detected")
    assert [(names[e.client_id or ""], e.occurred_at[:10]) for e in anomalies] == [
        ("spiky", (START + timedelta(days=251)).date().isoformat())
    ]
    assert anomalies[0].data["observed"] == 50_000 and anomalies[0].data["baseline"] == 100
    await accounts.close()
