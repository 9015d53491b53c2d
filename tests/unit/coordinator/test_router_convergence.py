"""Placement converges on what workers hold: two real in-process workers, one real hub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from coordinator.unservable import UnservableTenants
from workers.main import run_worker
from workers.protocol import Op
from workers.tenant_store import TenantStore

SECRET = "s3cret-worker-token"
BEAT_S = 0.05


@dataclass
class Cluster:
    hub: WorkerHub
    router: TenantRouter
    hot: Path
    alerts: list[tuple[str, float, str]]


async def _until(what: str, check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    hub = WorkerHub(SECRET)
    port = await hub.start("127.0.0.1", 0)
    router = TenantRouter(hub, timeout_s=2.0, unavailable_alert_s=0.3)
    alerts: list[tuple[str, float, str]] = []

    async def alert(tenant: str, seconds: float, reason: str) -> None:
        alerts.append((tenant, seconds, reason))

    router.on_unservable_alert = alert
    stop = asyncio.Event()
    hot = tmp_path / "hot"  # shared, as on one host: the directory lock decides
    workers = [
        asyncio.create_task(
            run_worker(f"ws://127.0.0.1:{port}", SECRET, wid, hot, 1 << 20, BEAT_S, stop)
        )
        for wid in ("wa", "wb")
    ]
    await _until("two workers", lambda: len(hub.live()) == 2)
    try:
        yield Cluster(hub, router, hot, alerts)
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await hub.close()


def _owner(cluster: Cluster, tenant: str) -> str | None:
    current = cluster.router.assignments.get(tenant)
    return None if current is None else current.worker_id


async def test_a_tenant_held_by_a_draining_worker_is_released_there_first(
    cluster: Cluster,
) -> None:
    await cluster.router.call("t1", Op.USAGE)
    holder = _owner(cluster, "t1")
    other = next(link.worker_id for link in cluster.hub.live() if link.worker_id != holder)
    link = cluster.hub.links[str(holder)]
    await _until("the holder's report", lambda: "t1" in (link.held or {}))
    # The coordinator lost track (a hand-over cut short) and the holder is draining:
    # placement must not pick a worker that cannot lock it and leave it there for ever.
    cluster.router._assignments.pop("t1")
    cluster.router.draining.add(str(holder))
    await cluster.router.call("t1", Op.USAGE)
    assert _owner(cluster, "t1") == other
    await _until("the old holder's report", lambda: "t1" not in (link.held or {}))


async def test_a_tenant_held_but_unassigned_is_adopted_from_the_heartbeat(
    cluster: Cluster,
) -> None:
    await cluster.router.call("t2", Op.USAGE)
    holder = _owner(cluster, "t2")
    cluster.router._assignments.pop("t2")
    await _until("adoption", lambda: _owner(cluster, "t2") == holder)
    await cluster.router.call("t2", Op.USAGE)  # served at the adopted epoch


async def test_an_unservable_tenant_is_retried_with_backoff_and_alerted_once(
    cluster: Cluster,
) -> None:
    outsider = TenantStore.open(cluster.hot, "t3", 1 << 20)  # holds the lock, outside any worker
    try:
        with pytest.raises(TenantUnavailable):
            await cluster.router.call("t3", Op.USAGE)
        assert "t3" in cluster.router.unservable
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            await cluster.router.heal_once()
            await asyncio.sleep(0.05)
        assert [a[0] for a in cluster.alerts] == ["t3"]
        assert "held by another worker" in cluster.alerts[0][2]
        assert cluster.router.unservable.over_bound() == 1
    finally:
        outsider.close()
    # the lock is free again: the background retry hands it over, no request needed
    deadline = time.monotonic() + 10
    while "t3" in cluster.router.unservable:
        assert time.monotonic() < deadline, "no hand-over after the lock was freed"
        await cluster.router.heal_once()
        await asyncio.sleep(0.05)
    assert _owner(cluster, "t3") is not None
    assert len(cluster.alerts) == 1


def test_outage_backoff_doubles_up_to_the_cap_and_alerts_once() -> None:
    outages = UnservableTenants(alert_after_s=30, first_retry_s=0.25, max_retry_s=1.0)
    outages.failed("t", "held", now=0.0)
    assert outages.due(now=0.2) == [] and outages.due(now=0.25) == ["t"]
    delays = []
    for now in (1.0, 2.0, 3.0, 4.0):
        outages.failed("t", "held", now=now)
        delays.append(outages._outages["t"].delay)
    assert delays == [0.5, 1.0, 1.0, 1.0]
    assert outages.to_alert(now=29.0) == []
    assert [t for t, _ in outages.to_alert(now=31.0)] == ["t"]
    assert outages.to_alert(now=60.0) == [] and outages.alerts == 1
    assert outages.served("t", now=61.0) == 61.0 and "t" not in outages
