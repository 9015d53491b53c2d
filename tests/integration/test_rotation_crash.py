"""SIGKILL of the coordinator at each step of a data key rotation: data readable, rotation finished.

The stack runs with ``VP_TEST_CRASH_AT`` naming one step of ``DataKeys.rotate``; the
rotate-key request makes the coordinator kill itself (SIGKILL) there. The next start
finds the rotation unfinished (two key versions) and completes it: every vector reads
back, the collection's files are under version 2, the old key is retired (kept for
older backups) and ``client.data_key_rotated`` is recorded exactly once.
"""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.stack import running_stack
from workers.crash_points import CRASH_ENV

pytestmark = pytest.mark.integration

DIM = 8
N = 30


def _wait(predicate: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("step", ["rotation-start", "rotation-resealed", "rotation-recorded"])
def test_coordinator_killed_mid_rotation_finishes_it_at_the_next_start(
    tmp_path: Path, step: str
) -> None:
    data = np.random.default_rng(9).standard_normal((N, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(N)]
    with running_stack(tmp_path, **{CRASH_ENV: step}) as stack:
        key = stack.new_client("rotor", tier="premium")
        with stack.admin() as admin:
            cid = admin.get("/admin/v1/clients").json()["clients"][0]["client_id"]
        with stack.client(key) as c:
            spec = {"name": "graph", "dimension": DIM, "metric": "l2", "index": "hnsw"}
            assert c.post("/v1/collections", json=spec).status_code == 201
            body = {"ids": ids, "values_b64": base64.b64encode(data.tobytes()).decode()}
            assert c.post("/v1/collections/graph/upsert", json=body).status_code == 200
        with stack.admin() as admin:
            r = admin.post(f"/admin/v1/clients/{cid}/rotate-key", json={})
            assert r.status_code == 202, r.text
        assert stack.proc is not None
        stack.proc.wait(60)
        assert stack.proc.returncode == -signal.SIGKILL, "".join(stack.output[-20:])
        os.killpg(stack.proc.pid, signal.SIGKILL)  # its workers go down with it

    with running_stack(tmp_path) as stack:
        with stack.admin() as admin:
            params = {"type": "client.data_key_rotated", "client_id": cid}

            def rotated() -> bool:
                return bool(admin.get("/admin/v1/events", params=params).json()["events"])

            _wait(rotated, "the resumed rotation")
            events = admin.get("/admin/v1/events", params=params).json()["events"]
            assert len(events) == 1 and events[0]["data"]["key_version"] == 2
        with stack.client(key) as c:
            r = c.post("/v1/collections/graph/fetch", json={"ids": ids})
            assert r.status_code == 200, r.text
            got = r.json()["vectors"]
            for i in (0, 17, N - 1):
                assert np.asarray(got[f"v{i}"]["values"], np.float32).tobytes() == data[i].tobytes()
    manifest = orjson.loads((tmp_path / "hot" / cid / "graph" / "manifest.json").read_bytes())
    assert manifest["key_version"] == 2
    with sqlite3.connect(tmp_path / "control.sqlite3") as db:
        versions = db.execute(
            "SELECT key_version, state FROM client_data_keys WHERE client_id = ? "
            "ORDER BY key_version",
            (cid,),
        ).fetchall()
    assert versions == [(1, "retired"), (2, "active")]
