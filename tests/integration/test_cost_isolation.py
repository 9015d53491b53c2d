"""A tenant that saturates a worker it shares is moved away from its neighbours (issue 12).

Two workers; tenants A and B on the same one. A sends few but very expensive filtered
queries (each runs to the deadline, so A has no successful requests at all: a request
rate never sees it); B sends simple queries. The worker reports the thread-seconds
each tenant holds in its heartbeat; the rebalancer (every second here) sees A keep a
thread busy at two looks running beside an active neighbour and moves A to the other
worker. It does not move A back, nor B, while A goes on.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 8
DEADLINE_S = 3.0
SENDERS = 4
WAIT_FOR_MOVE_S = 90.0  # an upper bound to give up at, not a figure under test
SETTLE_S = 3.0  # three rebalancer looks
LOOKS_AFTER = 6  # rebalancer looks (1 s apart) watched after the move: nothing moves back
TAGS = [f"t{j:03d}" for j in range(400)]
# 1,000 range conditions over 400 rows of 400 tags (160 million comparisons): far
# more work than the deadline allows, so every request runs until the deadline and is
# cancelled there.
HEAVY = {
    "vector": [0.0] * DIM,
    "top_k": 5,
    "filter": {"$or": [{"tags": {"$gt": f"z{i}"}} for i in range(1000)]},
}


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("vp-isolation")
    env = {
        "VP_REQUEST_TIMEOUT_S": str(DEADLINE_S),
        "VP_REBALANCE_INTERVAL_S": "1",
        # one request thread per tenant, whatever this machine's core count
        "VP_WORKER_TENANT_THREADS": "1",
        # No cooldown: a tenant the set-up happened to move stays movable. What keeps
        # A from moving back after the move is then the rule itself (never to a worker
        # with as many active tenants as it left), which is what this test watches.
        "VP_REBALANCE_COOLDOWN_S": "0",
    }
    with running_stack(data_dir, workers=2, **env) as stack:
        yield stack


def _client(stack: Stack, name: str) -> tuple[str, str]:
    with stack.admin() as admin:
        body = {"name": name, "email": f"{name}@example.com", "tier": "premium"}
        r = admin.post("/admin/v1/clients", json=body)
        assert r.status_code == 201, r.text
        cid = r.json()["client_id"]
        scopes = {"scopes": ["read", "write", "manage"]}
        r = admin.post(f"/admin/v1/clients/{cid}/keys", json=scopes)
        assert r.status_code == 201, r.text
        return str(cid), str(r.json()["api_key"])


def _collection(client: httpx.Client, name: str, rows: int, metadata: dict[str, object]) -> None:
    r = client.post("/v1/collections", json={"name": name, "dimension": DIM, "metric": "l2"})
    assert r.status_code == 201, r.text
    rng = np.random.default_rng(rows)
    vectors = [
        {"id": f"v{i}", "values": rng.standard_normal(DIM).tolist(), "metadata": metadata}
        for i in range(rows)
    ]
    for start in range(0, rows, 1000):
        batch = {"vectors": vectors[start : start + 1000]}
        r = client.post(f"/v1/collections/{name}/upsert", json=batch)
        assert r.status_code == 200, r.text


def _placement(stack: Stack) -> tuple[dict[str, str], int]:
    """Tenant -> worker id, and the coordinator's count of placement changes."""
    with stack.admin() as admin:
        body = admin.get("/admin/v1/workers").json()
    # VP_WORKER_TENANT_THREADS reached the workers (they report it in their heartbeat)
    live = [w for w in body["workers"] if w["state"] == "live"]
    assert {w["load"].get("tenant_threads") for w in live} == {1}, body
    owners = {t: w["worker_id"] for w in body["workers"] for t in w["tenant_ids"]}
    return owners, int(body["placement_changes"])


def test_a_tenant_saturating_a_shared_worker_is_moved_away_from_its_neighbour(
    two_workers: Stack,
) -> None:
    clients = [_client(two_workers, f"iso{i}") for i in range(3)]
    for _, key in clients:
        with two_workers.client(key) as client:
            _collection(client, "heavy", 400, {"tags": TAGS})
    # Let the set-up's requests age out of the rebalancer's request-rate sample (it looks
    # every second; set-up may have moved a tenant): from here on A has no successful
    # request at all, so the rule that moves the busiest tenant by request rate has
    # nothing to go on, and only A's busy time can separate the two.
    time.sleep(SETTLE_S)
    owners, _ = _placement(two_workers)
    # Three tenants on two workers: two of them share one. They are A and B.
    ids = [cid for cid, _ in clients]
    a_id, b_id = next(
        (x, y) for i, x in enumerate(ids) for y in ids[i + 1 :] if owners[x] == owners[y]
    )
    keys = dict(clients)
    shared = owners[a_id]

    stop = threading.Event()
    a_statuses: Counter[int] = Counter()
    b_statuses: Counter[int] = Counter()

    def flood() -> None:
        with two_workers.client(keys[a_id]) as client:
            while not stop.is_set():
                a_statuses[client.post("/v1/collections/heavy/query", json=HEAVY).status_code] += 1

    def steady() -> None:
        with two_workers.client(keys[b_id]) as client:
            while not stop.is_set():
                r = client.post("/v1/collections/heavy/query", json={"vector": [0.5] * DIM})
                b_statuses[r.status_code] += 1
                time.sleep(0.2)

    threads = [threading.Thread(target=flood) for _ in range(SENDERS)]
    threads.append(threading.Thread(target=steady))
    for thread in threads:
        thread.start()
    try:
        give_up = time.monotonic() + WAIT_FOR_MOVE_S
        while True:
            owners, changes = _placement(two_workers)
            if owners.get(a_id) not in (shared, None):
                break
            assert time.monotonic() < give_up, (
                f"A was never moved off {shared}: {owners}; A {dict(a_statuses)}, "
                f"B {dict(b_statuses)}\n" + "".join(two_workers.output[-30:])
            )
            time.sleep(0.5)
        assert owners[b_id] == shared, f"B moved, not A: {owners}"  # A was the one moved
        # A goes on flooding on its own worker: it is not moved back, and B is not moved.
        for _ in range(LOOKS_AFTER):
            time.sleep(1.0)
            later, later_changes = _placement(two_workers)
            assert (later[a_id], later[b_id]) == (owners[a_id], shared), later
        assert later_changes == changes, "placements changed again after A was isolated"
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert a_statuses[503] > 0, f"A's queries were not the expensive kind: {dict(a_statuses)}"
    assert a_statuses[200] == 0, dict(a_statuses)  # no successful request: no request rate
    assert set(b_statuses) == {200}, f"B got {dict(b_statuses)}"
    log = "".join(two_workers.output)
    assert f"moving hot tenant {a_id} from {shared}" in log
