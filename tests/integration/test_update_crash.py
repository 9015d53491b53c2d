"""A metadata update is all or nothing when the worker dies at any point of it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack, running_stack
from workers.maintenance import Maintenance
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT = "crash_tenant"
DIM = 8
ROWS = 3000

# The child: a collection whose vectors all carry {"gen": 0}; then updates that set
# gen 1, 2, 3, ... on every vector, printing each gen only after update_metadata()
# returned. A crash point makes the WAL append of the third update die at one step.
CHILD = r"""
import os, sys
from pathlib import Path
import numpy as np
import workers.wal as wal_module
from workers.collection_spec import parse_collection_spec
from workers.tenant_store import TenantStore

hot, crash, index, rows = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
store = TenantStore.open(hot, "crash_tenant", 1 << 30)
store.create_collection(parse_collection_spec(
    {"collection": "c", "dimension": 8, "metric": "l2", "index": index}))
coll = store.collection("c")
vectors = np.random.default_rng(1).standard_normal((rows, 8), dtype=np.float32)
for start in range(0, rows, 1000):
    ids = [f"v{i}" for i in range(start, min(rows, start + 1000))]
    coll.upsert(ids, [{"gen": 0, "i": i} for i in range(start, start + len(ids))],
                vectors[start:start + len(ids)])

class CrashingOs:
    # Only the WAL's own calls go through here; the background threads are untouched.
    def __init__(self):
        self.writes = 0
        self.armed = False
    def __getattr__(self, name):
        return getattr(os, name)
    def write(self, fd, data):
        if self.armed and crash == "mid_write":
            os.write(fd, bytes(data[: len(data) // 2]))
            os._exit(137)
        return os.write(fd, data)
    def fsync(self, fd):
        if self.armed and crash == "before_fsync":
            os._exit(137)
        os.fsync(fd)
        if self.armed and crash == "after_fsync":
            os._exit(137)

crashing = CrashingOs()
wal_module.os = crashing
print("ready", flush=True)
for gen in range(1, 1000):
    crashing.armed = gen == 3
    coll.update_metadata(None, None, {"gen": gen}, [])
    print(gen, flush=True)
"""

# Crash point -> whether the third update must be there after recovery.
CRASH_POINTS = {"mid_write": False, "before_fsync": True, "after_fsync": True}


def _gens(hot: Path) -> dict[int, int]:
    """Reopen the store: how many vectors carry each gen (and check nothing else changed)."""
    store = TenantStore.open(hot, TENANT, 1 << 30, maintenance=Maintenance(autostart=False))
    try:
        coll = store.collection("c")
        found, meta, _ = coll.fetch([f"v{i}" for i in range(ROWS)])
        assert len(found) == ROWS
        counts: dict[int, int] = {}
        for vector_id, m in zip(found, meta, strict=True):
            assert m is not None and m["i"] == int(vector_id[1:])
            counts[m["gen"]] = counts.get(m["gen"], 0) + 1
        return counts
    finally:
        store.close()


@pytest.mark.parametrize(
    ("crash", "index"),
    [(c, "flat") for c in CRASH_POINTS] + [("mid_write", "hnsw"), ("after_fsync", "hnsw")],
)
def test_crash_at_each_step_of_an_update_leaves_all_or_nothing(
    tmp_path: Path, crash: str, index: str
) -> None:
    hot = tmp_path / "hot"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(hot), crash, index, str(ROWS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 137, proc.stderr[-3000:]
    acked = [int(line) for line in proc.stdout.split() if line.isdigit()]
    assert acked == [1, 2], proc.stdout
    expected = 3 if CRASH_POINTS[crash] else 2
    assert _gens(hot) == {expected: ROWS}


# --- through the real service: SIGKILL of the owning worker during an update ---------

N = 10_000


def _owner_pid(stack: Stack, client_id: str) -> int | None:
    with stack.admin() as admin:
        for worker in admin.get("/admin/v1/workers").json()["workers"]:
            if worker["state"] == "live" and client_id in worker["tenant_ids"]:
                return int(worker["pid"])
    return None


def _wait_for_workers(stack: Stack, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with stack.admin() as admin:
            workers = admin.get("/admin/v1/workers").json()["workers"]
        if sum(w["state"] == "live" for w in workers) >= count:
            return
        time.sleep(0.1)
    raise AssertionError("the killed worker was not restarted:\n" + "".join(stack.output[-30:]))


def _gen_counts(client: httpx.Client, name: str, gens: list[int]) -> dict[int, int]:
    deadline = time.monotonic() + 30
    while True:
        counts = {}
        for gen in gens:
            r = client.post(f"/v1/collections/{name}/count", json={"filter": {"gen": gen}})
            if r.status_code != 200:
                break
            counts[gen] = r.json()["count"]
        else:
            return counts
        assert r.status_code == 503 and time.monotonic() < deadline, r.text
        time.sleep(0.05)


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_sigkill_of_the_worker_mid_update_is_all_or_nothing(
    tmp_path_factory: pytest.TempPathFactory, index: str
) -> None:
    rng = random.Random(5)
    with running_stack(tmp_path_factory.mktemp(f"crash-{index}")) as stack:
        with stack.admin() as admin:
            r = admin.post("/admin/v1/clients", json={"name": "crash", "email": "c@example.com"})
            client_id = r.json()["client_id"]
            scopes = {"scopes": ["read", "write", "manage"]}
            r = admin.post(f"/admin/v1/clients/{client_id}/keys", json=scopes)
            key = r.json()["api_key"]
        client = stack.client(key)
        body = {"name": "c", "dimension": DIM, "metric": "l2", "index": index}
        assert client.post("/v1/collections", json=body).status_code == 201
        for start in range(0, N, 1000):
            rows = [
                {"id": f"v{i}", "values": [float(i % 97)] * DIM, "metadata": {"gen": 0, "i": i}}
                for i in range(start, start + 1000)
            ]
            assert (
                client.post("/v1/collections/c/upsert", json={"vectors": rows}).status_code == 200
            )
        # Updates without a kill, timed (the faster of two, as background indexing may slow
        # the first), so the kills below land while one is in flight.
        took = float("inf")
        for gen in (1, 2):
            started = time.monotonic()
            r = client.post("/v1/collections/c/update", json={"filter": {}, "set": {"gen": gen}})
            took = min(took, time.monotonic() - started)
            assert r.json() == {"updated": N}
        in_flight = 0  # kills that landed before the update was answered
        for _ in range(4):
            _wait_for_workers(stack, 2)
            pid = _owner_pid(stack, client_id)
            assert pid is not None
            answer: list[httpx.Response] = []
            answered_at: list[float] = []

            def update(answer: list[httpx.Response], answered_at: list[float], target: int) -> None:
                with stack.client(key) as c:
                    body = {"filter": {}, "set": {"gen": target}}
                    answer.append(c.post("/v1/collections/c/update", json=body))
                    answered_at.append(time.monotonic())

            thread = threading.Thread(target=update, args=(answer, answered_at, gen + 1))
            thread.start()
            time.sleep(rng.uniform(0.1, 0.7) * took)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            thread.join(60)
            counts = _gen_counts(client, "c", [gen, gen + 1])
            # All or nothing: every vector has the old gen, or every one the new.
            assert sorted(counts.values()) == [0, N], counts
            if answer and answer[0].status_code == 200:
                assert counts[gen + 1] == N, "an acknowledged update was lost"
            in_flight += not answered_at or answered_at[0] > killed_at
            gen = gen + 1 if counts[gen + 1] == N else gen
        client.close()
        assert in_flight, "every update was answered before its kill: nothing was tested"
