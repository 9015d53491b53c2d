"""Acknowledged writes survive a restart of ``up`` and a SIGKILL of a worker."""

from __future__ import annotations

import base64
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 32


def _upsert(client: httpx.Client, name: str, ids: list[str], data: np.ndarray) -> bool:
    packed = base64.b64encode(data.astype("<f4").tobytes()).decode()
    r = client.post(f"/v1/collections/{name}/upsert", json={"ids": ids, "values_b64": packed})
    return r.status_code == 200


def _fetch_all(client: httpx.Client, name: str, ids: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(ids), 1000):
        r = client.post(f"/v1/collections/{name}/fetch", json={"ids": ids[i : i + 1000]})
        assert r.status_code == 200, r.text
        for vid, v in r.json()["vectors"].items():
            out[vid] = np.asarray(v["values"], dtype=np.float32)
    return out


def test_restart_keeps_every_acknowledged_vector(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    data = rng.standard_normal((3000, DIM)).astype(np.float32)
    ids = [f"id-{i}" for i in range(len(data))]
    with running_stack(tmp_path) as s:
        keys = [s.new_client("p1"), s.new_client("p2")]
        for key in keys:
            with s.client(key) as c:
                assert (
                    c.post(
                        "/v1/collections", json={"name": "keep", "dimension": DIM, "metric": "l2"}
                    ).status_code
                    == 201
                )
                for i in range(0, len(data), 500):
                    assert _upsert(c, "keep", ids[i : i + 500], data[i : i + 500])
                c.post("/v1/collections/keep/delete", json={"ids": ids[:10]})
    with running_stack(tmp_path) as s:
        for key in keys:
            with s.client(key) as c:
                assert c.get("/v1/collections/keep").json()["vector_count"] == len(data) - 10
                got = _fetch_all(c, "keep", ids)
                assert set(got) == set(ids[10:])
                for i in (10, 1234, 2999):
                    assert np.array_equal(got[ids[i]], data[i])
                r = c.post(
                    "/v1/collections/keep/query", json={"vector": data[77].tolist(), "top_k": 1}
                )
                assert r.json()["matches"][0]["id"] == ids[77]


def test_sigkill_worker_after_burst_loses_no_acknowledged_write(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    with running_stack(tmp_path) as s:
        keys = [s.new_client(f"burst{i}") for i in range(4)]
        acked: dict[str, dict[str, np.ndarray]] = {k: {} for k in keys}

        def burst(key: str) -> None:
            with s.client(key) as c:
                assert (
                    c.post("/v1/collections", json={"name": "b", "dimension": DIM}).status_code
                    == 201
                )
                for batch in range(20):
                    data = rng.standard_normal((50, DIM)).astype(np.float32)
                    ids = [f"{batch}-{j}" for j in range(50)]
                    if _upsert(c, "b", ids, data):
                        acked[key].update(zip(ids, data, strict=True))

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(burst, keys))
        pids = s.worker_pids()
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # the supervisor restarts the workers; tenants are reassigned and reloaded
        deadline = time.monotonic() + 30
        for key in keys:
            with s.client(key) as c:
                while True:
                    r = c.get("/v1/collections/b")
                    if r.status_code == 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert r.status_code == 200, r.text
                assert r.json()["vector_count"] == len(acked[key]) == 1000
                got = _fetch_all(c, "b", list(acked[key]))
                assert set(got) == set(acked[key])
                for vid, values in acked[key].items():
                    assert np.array_equal(got[vid], values)


def test_stack_stops_cleanly_on_sigterm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Stack(
        data_dir=tmp_path, port=__import__("tests.stack", fromlist=["x"]).free_port(), workers=2
    ).start()
    workers = s.worker_pids()
    assert len(workers) == 2
    assert s.stop() == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "VectorPanda stopped." in "".join(s.output)
