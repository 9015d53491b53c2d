"""A frozen worker under ``vectorpanda up`` is fenced: killed, replaced, its tenants served."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fleet import Fleet
from tests.stack import Stack, running_stack
from vectorpanda.settings import ensure_env_file

pytestmark = pytest.mark.integration

DIM = 16
TENANTS = 6
SERVED_AGAIN_WITHIN_S = 5.0


def packed(data: np.ndarray) -> str:
    return base64.b64encode(data.astype("<f4").tobytes()).decode()


class TenantLoad(threading.Thread):
    """Alternates upserts and queries for one tenant, recording every answer."""

    def __init__(self, stack: Stack, key: str, name: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.client = stack.client(key)
        self.client.timeout = httpx.Timeout(20)
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.acked: dict[str, np.ndarray] = {}
        # (sent at, answered at, status), monotonic clock
        self.answers: list[tuple[float, float, int]] = []
        self.stop_flag = threading.Event()

    def _send(self, path: str, body: dict[str, object]) -> int:
        sent = time.monotonic()
        try:
            status = self.client.post(path, json=body).status_code
        except httpx.HTTPError:
            status = -1
        self.answers.append((sent, time.monotonic(), status))
        return status

    def run(self) -> None:
        batch = 0
        while not self.stop_flag.is_set():
            data = self.rng.standard_normal((10, DIM)).astype(np.float32)
            ids = [f"{self.name}-{batch}-{j}" for j in range(10)]
            body = {"ids": ids, "values_b64": packed(data)}
            if self._send("/v1/collections/c/upsert", body) == 200:
                self.acked.update(zip(ids, data, strict=True))
            self._send("/v1/collections/c/query", {"vector": data[0].tolist(), "top_k": 3})
            batch += 1
            time.sleep(0.01)

    def served_again_after(self, since: float) -> float | None:
        """Seconds from ``since`` to the first success of a request sent after it."""
        done = [
            answered for sent, answered, status in self.answers if sent >= since and status == 200
        ]
        return min(done) - since if done else None


def workers_view(stack: Stack) -> list[dict[str, object]]:
    with stack.admin() as admin:
        return list(admin.get("/admin/v1/workers").json()["workers"])


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "data", workers=2) as s:
        yield s


def test_frozen_worker_is_fenced_and_its_tenants_move(stack: Stack) -> None:
    tenants = [new_tenant(stack, f"stall{i}") for i in range(TENANTS)]
    keys = [key for _, key in tenants]
    for key in keys:
        with stack.client(key) as c:
            r = c.post("/v1/collections", json={"name": "c", "dimension": DIM})
            assert r.status_code == 201, r.text
    loads = [TenantLoad(stack, key, f"t{i}", i) for i, key in enumerate(keys)]
    by_client = {cid: load for (cid, _), load in zip(tenants, loads, strict=True)}
    for load in loads:
        load.start()
    victim_pid = 0
    try:
        time.sleep(1.5)
        view = workers_view(stack)
        live = [w for w in view if w["state"] == "live"]
        victim = max(live, key=lambda w: int(w["tenants"]))  # type: ignore[arg-type]
        victim_id, victim_pid = str(victim["worker_id"]), int(victim["pid"])  # type: ignore[arg-type]
        assert victim_pid in stack.worker_pids()
        victim_tenants = set(victim["tenant_ids"])  # type: ignore[arg-type]
        assert victim_tenants and victim_tenants <= set(by_client), view

        os.kill(victim_pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        deadline = stopped_at + 20
        watched = [by_client[t] for t in victim_tenants]
        while time.monotonic() < deadline:
            if all(w.served_again_after(stopped_at) is not None for w in watched):
                break
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        for load in loads:
            load.stop_flag.set()
        for load in loads:
            load.join(30)
        if victim_pid and not process_gone(victim_pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim_pid, signal.SIGCONT)

    recovery = {t: by_client[t].served_again_after(stopped_at) for t in victim_tenants}
    assert all(r is not None and r <= SERVED_AGAIN_WITHIN_S for r in recovery.values()), recovery
    for load in loads:
        statuses = {status for _, _, status in load.answers}
        assert 500 not in statuses and -1 not in statuses, statuses
        assert statuses <= {200, 429, 503}, statuses
        assert load.acked

    # the frozen process is gone and a new one took its place under the same id
    assert process_gone(victim_pid)
    replaced = False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not replaced:
        replaced = any(
            w["worker_id"] == victim_id and w["state"] == "live" and w["pid"] != victim_pid
            for w in workers_view(stack)
        )
        time.sleep(0.2)
    assert replaced, workers_view(stack)
    assert any("fencing worker" in line for line in stack.output), "".join(stack.output[-40:])
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert "vectorpanda_worker_fences_total 1.0" in metrics

    # every acknowledged write is there, bit for bit
    for key, load in zip(keys, loads, strict=True):
        with stack.client(key) as c:
            ids = list(load.acked)
            for i in range(0, len(ids), 1000):
                r = c.post("/v1/collections/c/fetch", json={"ids": ids[i : i + 1000]})
                assert r.status_code == 200, r.text
                got = r.json()["vectors"]
                for vid in ids[i : i + 1000]:
                    values = np.asarray(got[vid]["values"], dtype=np.float32)
                    assert np.array_equal(values, load.acked[vid]), vid


def new_tenant(stack: Stack, name: str) -> tuple[str, str]:
    """A client with a read/write key: (client id, API key)."""
    with stack.admin() as admin:
        body = {"name": name, "email": f"{name}@example.com", "tier": "premium"}
        r = admin.post("/admin/v1/clients", json=body)
        r.raise_for_status()
        client_id = str(r.json()["client_id"])
        r = admin.post(
            f"/admin/v1/clients/{client_id}/keys", json={"scopes": ["read", "write", "manage"]}
        )
        r.raise_for_status()
        return client_id, str(r.json()["api_key"])


def test_fleet_coordinator_fences_its_local_frozen_worker(tmp_path: Path) -> None:
    """``vectorpanda fleet`` runs the coordinator with VP_FENCE_LOCAL_WORKERS: it kills the
    frozen worker itself (checked in /proc to be that worker) before handing tenants on."""
    fleet = Fleet(tmp_path, workers=2)
    ensure_env_file(tmp_path / "vectorpanda.env")
    fleet.coordinator = fleet._spawn("coordinator", VP_FENCE_LOCAL_WORKERS="true")
    try:
        fleet.coordinator.wait_for("coordinator ready")
        for worker_id in ("w1", "w2"):
            fleet.start_worker(worker_id)
        fleet.wait_live(2)
        cid, key = fleet.new_client("fleetstall")
        with fleet.client(key, timeout=30) as c:
            r = c.post("/v1/collections", json={"name": "c", "dimension": DIM})
            assert r.status_code == 201, r.text
            data = np.random.default_rng(3).standard_normal((50, DIM)).astype(np.float32)
            ids = [f"v{i}" for i in range(50)]
            body = {"ids": ids, "values_b64": packed(data)}
            assert c.post("/v1/collections/c/upsert", json=body).status_code == 200
            owner = fleet.owner_of(cid)
            assert owner is not None
            frozen = fleet.worker_procs[owner]
            frozen.signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            statuses = []
            while time.monotonic() - stopped_at < 20:
                r = c.post("/v1/collections/c/fetch", json={"ids": ids})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    break
                time.sleep(0.05)
            served_after = time.monotonic() - stopped_at
            assert r.status_code == 200 and served_after <= SERVED_AGAIN_WITHIN_S, served_after
            assert set(statuses) <= {200, 503}, statuses
            got = r.json()["vectors"]
            for i, vid in enumerate(ids):
                assert np.array_equal(np.asarray(got[vid]["values"], np.float32), data[i])
        assert frozen.popen.wait(10) == -signal.SIGKILL
        assert "fencing worker" in "".join(fleet.coordinator.output)
        assert "vectorpanda_worker_fences_total 1.0" in httpx.get(f"{fleet.url}/metrics").text
    finally:
        fleet.stop()
