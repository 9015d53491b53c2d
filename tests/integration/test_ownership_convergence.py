"""No tenant stays unservable: drain a worker, stall the coordinator past the lease, recover.

Through ``vectorpanda up`` with two workers. The stall is the test hook
``POST /admin/v1/test/stall`` (mounted only with VP_TEST_HOOKS=1): it blocks the
coordinator's event loop as parsing a huge body would, so heartbeats go
unacknowledged and the workers' ownership leases run out, possibly in the
middle of the drain's hand-overs (the request deadline is short on purpose).
After each stall every tenant must be served again within 10 s, and then answer
without a 503.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

TENANTS = 8
ROUNDS = 10
RECOVERY_S = 10.0
DIM = 4


def _query(client: httpx.Client) -> int:
    r = client.post("/v1/collections/c/query", json={"vector": [1.0] * DIM, "top_k": 1})
    return r.status_code


def _served_again(clients: list[httpx.Client], deadline: float) -> list[int]:
    """Indexes of the tenants still not served at ``deadline``."""
    waiting = set(range(len(clients)))
    while waiting and time.monotonic() < deadline:
        for i in sorted(waiting):
            try:
                if _query(clients[i]) == 200:
                    waiting.discard(i)
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    return sorted(waiting)


def _live_workers(stack: Stack) -> list[str]:
    with stack.admin() as admin:
        rows = admin.get("/admin/v1/workers").json()["workers"]
    return [w["worker_id"] for w in rows if w["state"] == "live"]


def _disrupt(stack: Stack, clients: list[httpx.Client], rng: random.Random) -> None:
    """Drain a random worker and, a random moment later, stall the coordinator, under traffic."""
    victim = rng.choice(_live_workers(stack))
    # Around the lease (2.5 heartbeats) and the coordinator's down mark (3): leases
    # run out, and the workers may or may not be declared down as well.
    stall_after, stall_s = rng.uniform(0.0, 0.3), rng.uniform(2.7, 3.6)
    busy = threading.Event()
    busy.set()

    def drain() -> None:
        with stack.admin() as admin:
            admin.post(f"/admin/v1/workers/{victim}/drain")  # may fail part-way: fine

    def stall() -> None:
        time.sleep(stall_after)
        with stack.admin() as admin:
            r = admin.post("/admin/v1/test/stall", params={"seconds": stall_s})
            assert r.status_code == 200, r.text

    def traffic() -> None:
        # Requests keep arriving through the stall, as they would in production.
        while busy.is_set():
            for client in clients:
                with contextlib.suppress(httpx.HTTPError):
                    _query(client)

    threads = [threading.Thread(target=f) for f in (drain, stall, traffic)]
    for t in threads:
        t.start()
    threads[1].join(60)
    time.sleep(rng.uniform(0.0, 1.5))
    busy.clear()
    for t in threads:
        t.join(60)


def test_every_tenant_is_served_again_after_drain_and_stall(tmp_path: Path) -> None:
    rng = random.Random(21)
    env = {
        "VP_TEST_HOOKS": "1",
        "VP_RATE_LIMITS": "false",
        "VP_REQUEST_TIMEOUT_S": "2",  # a stall outlives the drain's hand-over deadlines
    }
    with running_stack(tmp_path / "vp", workers=2, **env) as stack:
        clients = [stack.client(stack.new_client(f"conv{i}")) for i in range(TENANTS)]
        for i, client in enumerate(clients):
            r = client.post("/v1/collections", json={"name": "c", "dimension": DIM})
            assert r.status_code == 201, r.text
            vectors = [{"id": f"v{i}", "values": [float(i + 1)] * DIM}]
            r = client.post("/v1/collections/c/upsert", json={"vectors": vectors})
            assert r.status_code == 200, r.text
        left_unservable: dict[int, list[int]] = {}
        late_503: dict[int, int] = {}
        for round_no in range(ROUNDS):
            _disrupt(stack, clients, rng)
            stuck = _served_again(clients, time.monotonic() + RECOVERY_S)
            if stuck:
                left_unservable[round_no] = stuck
                continue
            statuses = [_query(c) for c in clients for _ in range(2)]
            if 503 in statuses:
                late_503[round_no] = statuses.count(503)
        tail = "".join(stack.output[-60:])
        assert not left_unservable, f"tenants left unservable: {left_unservable}\n{tail}"
        assert not late_503, f"503 after recovery: {late_503}\n{tail}"
        # the scenario did what it is about: leases ran out while tenants were owned
        assert any("ownership lease expired: releasing" in line for line in stack.output), tail
        for client in clients:
            client.close()
