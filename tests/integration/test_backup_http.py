"""Per-client backups, restores and snapshots through a real ``vectorpanda up``.

A backup taken while one writer keeps upserting restores to exactly the state after
some prefix of the acknowledged writes (every one acknowledged before the backup was
asked for, nothing torn), checked vector by vector; a deleted collection comes back
bit-identical; snapshots stay the client's own; a paused client is backed up from
its cold copy; bad requests are clear 4xx answers.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("vp-backup")
    with running_stack(data_dir) as s:
        yield s


def _client_id(stack: Stack, name: str) -> str:
    with stack.admin() as admin:
        for c in admin.get("/admin/v1/clients").json()["clients"]:
            if c["name"] == name:
                return str(c["client_id"])
    raise AssertionError("client not found")


def _wait_backup(admin: httpx.Client, cid: str, backup_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = admin.get(f"/admin/v1/clients/{cid}/backups")
        assert r.status_code == 200, r.text
        for b in r.json()["backups"]:
            if b["backup_id"] == backup_id and b["status"] != "running":
                return dict(b)
        time.sleep(0.05)
    raise AssertionError("backup did not finish")


def _all_vectors(api: httpx.Client, name: str) -> dict[str, tuple[bytes, Any]]:
    """id -> (float32 bytes of the values, metadata) of every vector in the collection."""
    out: dict[str, tuple[bytes, Any]] = {}
    cursor = None
    while True:
        body: dict[str, Any] = {"limit": 1000, "include_values": True, "include_metadata": True}
        if cursor:
            body["cursor"] = cursor
        r = api.post(f"/v1/collections/{name}/list", json=body)
        assert r.status_code == 200, r.text
        page = r.json()
        for v in page["vectors"]:
            out[v["id"]] = (np.asarray(v["values"], dtype=np.float32).tobytes(), v.get("metadata"))
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def _batch(k: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(k)
    ids = [f"b{k}-{i}" for i in range(5)] + ["latest"]
    values = rng.standard_normal((6, DIM), dtype=np.float32)
    values[-1, :] = float(k)
    return ids, values


def _upsert(api: httpx.Client, k: int) -> None:
    ids, values = _batch(k)
    body = {
        "ids": ids,
        "values_b64": base64.b64encode(values.astype("<f4").tobytes()).decode(),
        "metadata": [{"batch": k}] * len(ids),
    }
    while True:
        r = api.post("/v1/collections/docs/upsert", json=body)
        if r.status_code == 503 and r.json()["error"]["code"] == "busy":
            time.sleep(0.02)  # back-pressure (the graph is behind): nothing was written
            continue
        assert r.status_code == 200, r.text
        return


def test_backup_under_writes_restores_a_prefix_of_the_acknowledged_writes(stack: Stack) -> None:
    key = stack.new_client("busy", tier="premium")
    cid = _client_id(stack, "busy")
    spec = {"name": "docs", "dimension": DIM, "metric": "l2", "index": "hnsw"}
    acked: list[int] = []
    stop = threading.Event()
    with stack.client(key) as api, stack.admin() as admin:
        assert api.post("/v1/collections", json=spec).status_code == 201

        errors: list[BaseException] = []

        def writer() -> None:
            with stack.client(key) as own:
                k = 0
                while not stop.is_set():
                    k += 1
                    try:
                        _upsert(own, k)
                    except BaseException as exc:  # surfaced below, in the test's thread
                        errors.append(exc)
                        return
                    acked.append(k)

        thread = threading.Thread(target=writer)
        thread.start()
        while len(acked) < 20:
            time.sleep(0.01)
        before = acked[-1]  # acknowledged before the backup was asked for
        r = admin.post(f"/admin/v1/clients/{cid}/backups", json={})
        assert r.status_code == 202, r.text
        started = r.json()
        assert started["status"] == "running" and started["backup_id"]
        done = _wait_backup(admin, cid, started["backup_id"])
        during = len(acked)
        time.sleep(0.2)
        stop.set()
        thread.join()
        assert not errors, errors
        assert done["status"] == "complete" and done["collections"] == ["docs"]
        assert done["head_seq"] > 0 and done["bytes"] > 0

        r = admin.post(
            f"/admin/v1/clients/{cid}/restore",
            json={"backup_id": started["backup_id"], "into_collection_suffix": "_r"},
        )
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "complete" and r.json()["restored"] == ["docs_r"]
        restored = _all_vectors(api, "docs_r")
        point = int(np.frombuffer(restored["latest"][0], dtype=np.float32)[0])
        assert before <= point <= acked[-1], (before, point, during)
        expected: dict[str, tuple[bytes, Any]] = {}
        for k in range(1, point + 1):
            ids, values = _batch(k)
            for i, vid in enumerate(ids):
                expected[vid] = (values[i].tobytes(), {"batch": k})
        assert restored.keys() == expected.keys(), "a write is missing or one after the point is in"
        for vid, (values, meta) in expected.items():
            assert restored[vid] == (values, meta), f"vector {vid} is torn"
        # The live collection kept every write, also those after the backup's point.
        assert len(_all_vectors(api, "docs")) == 5 * acked[-1] + 1
        events = admin.get("/admin/v1/events", params={"client_id": cid, "type": "backup.taken"})
        assert [e["data"]["backup_id"] for e in events.json()["events"]] == [done["backup_id"]]
        restores = admin.get(
            "/admin/v1/events", params={"client_id": cid, "type": "backup.restored"}
        ).json()["events"]
        assert len(restores) == 1 and restores[0]["data"]["into"] == ["docs_r"]


def test_restore_after_delete_brings_the_collection_back_bit_identical(stack: Stack) -> None:
    key = stack.new_client("oops")
    cid = _client_id(stack, "oops")
    spec = {"name": "docs", "dimension": DIM, "metric": "cosine", "index": "flat"}
    with stack.client(key) as api, stack.admin() as admin:
        assert api.post("/v1/collections", json=spec).status_code == 201
        for k in range(1, 6):
            _upsert(api, k)
        api.post("/v1/collections/docs/delete", json={"ids": ["b1-0"]}).raise_for_status()
        before = _all_vectors(api, "docs")
        backup_id = admin.post(f"/admin/v1/clients/{cid}/backups", json={}).json()["backup_id"]
        assert _wait_backup(admin, cid, backup_id)["vectors"] == len(before)
        assert api.delete("/v1/collections/docs").status_code == 204
        assert api.get("/v1/collections/docs").status_code == 404
        r = admin.post(f"/admin/v1/clients/{cid}/restore", json={"backup_id": backup_id})
        assert r.status_code == 202 and r.json()["status"] == "complete", r.text
        # Byte for byte the backup's files, before anything loads them.
        manifest = orjson.loads(
            (stack.data_dir / "backups" / cid / backup_id / "backup.json").read_bytes()
        )
        for entry in manifest["collections"][0]["files"]:
            live = stack.data_dir / "hot" / cid / entry["path"]
            assert hashlib.sha256(live.read_bytes()).hexdigest() == entry["sha256"], entry
        assert _all_vectors(api, "docs") == before
        assert api.get("/v1/collections/docs").json()["vector_count"] == len(before)
        # The log says the collection exists again (what `history?at=` folds).
        params = {"client_id": cid, "type": "collection.created"}
        created = admin.get("/admin/v1/events", params=params).json()["events"]
        assert [e["actor"] for e in created] == [created[0]["actor"], "admin"]
        assert created[-1]["data"]["name"] == "docs" and created[-1]["data"]["metric"] == "cosine"


def test_snapshots_are_the_clients_own(stack: Stack) -> None:
    key = stack.new_client("snappy")
    other = stack.new_client("nosy")
    spec = {"name": "docs", "dimension": DIM, "metric": "l2", "index": "flat"}
    with stack.client(key) as api, stack.client(other) as nosy:
        assert api.post("/v1/collections", json=spec).status_code == 201
        for k in range(1, 4):
            _upsert(api, k)
        before = _all_vectors(api, "docs")
        r = api.post("/v1/collections/docs/snapshots", json={})
        assert r.status_code == 202, r.text
        snap = r.json()["snapshot_id"]
        deadline = time.monotonic() + 30
        while True:
            listed = api.get("/v1/collections/docs/snapshots").json()["snapshots"]
            if listed and listed[0]["status"] == "complete":
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert listed[0]["snapshot_id"] == snap and listed[0]["vectors"] == len(before)
        made = api.post("/v1/collections", json={**spec, "name": "copy", "from_snapshot": snap})
        assert made.status_code == 201, made.text
        assert made.json()["vector_count"] == len(before)
        assert _all_vectors(api, "copy") == before
        # Another client's snapshot id is not found; nor is it listed for them.
        assert nosy.post("/v1/collections", json={**spec, "from_snapshot": snap}).status_code == 404
        assert nosy.get("/v1/collections/docs/snapshots").json() == {"snapshots": []}
        # Taken names, mismatched specs, missing collections and ids: clear 4xx.
        again = api.post("/v1/collections", json={**spec, "name": "copy", "from_snapshot": snap})
        assert again.status_code == 409
        wrong = {**spec, "name": "other", "dimension": DIM + 1, "from_snapshot": snap}
        assert api.post("/v1/collections", json=wrong).status_code == 409
        assert api.post("/v1/collections/none/snapshots", json={}).status_code == 404
        unknown = {**spec, "name": "x", "from_snapshot": "s-00000000t000000-00000000"}
        assert api.post("/v1/collections", json=unknown).status_code == 404
        assert api.post("/v1/collections/docs/snapshots", json={"x": 1}).status_code == 422


def test_paused_client_is_backed_up_from_cold_and_errors_are_4xx(stack: Stack) -> None:
    key = stack.new_client("sleepy")
    cid = _client_id(stack, "sleepy")
    spec = {"name": "docs", "dimension": DIM, "metric": "l2", "index": "flat"}
    with stack.client(key) as api, stack.admin() as admin:
        assert api.post("/v1/collections", json=spec).status_code == 201
        _upsert(api, 1)
        r = admin.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "backup test"})
        assert r.status_code == 200
        backup_id = admin.post(f"/admin/v1/clients/{cid}/backups", json={}).json()["backup_id"]
        done = _wait_backup(admin, cid, backup_id)
        assert done["status"] == "complete" and done["vectors"] == 6
        r = admin.post(f"/admin/v1/clients/{cid}/restore", json={"backup_id": backup_id})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        admin.post(f"/admin/v1/clients/{cid}/resume", json={"reason": "done"}).raise_for_status()
        missing = {"backup_id": "b-00000000t000000-00000000"}
        r = admin.post(f"/admin/v1/clients/{cid}/restore", json=missing)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = admin.post(
            f"/admin/v1/clients/{cid}/restore", json={"backup_id": backup_id, "collections": ["x"]}
        )
        assert r.status_code == 404
        r = admin.post(f"/admin/v1/clients/{cid}/restore", json={"backup_id": "../etc"})
        assert r.status_code == 422
        assert admin.post("/admin/v1/clients/nobody/backups", json={}).status_code == 404
        assert admin.get("/admin/v1/clients/nobody/backups").status_code == 404
        assert admin.post(f"/admin/v1/clients/{cid}/backups", json={"a": 1}).status_code == 422
        # Beside the live data, a taken name is a conflict, never an overwrite.
        r = admin.post(
            f"/admin/v1/clients/{cid}/restore",
            json={"backup_id": backup_id, "into_collection_suffix": "_b"},
        )
        assert r.status_code == 202 and r.json()["restored"] == ["docs_b"]
        r = admin.post(
            f"/admin/v1/clients/{cid}/restore",
            json={"backup_id": backup_id, "into_collection_suffix": "_b"},
        )
        assert r.status_code == 409, r.text
