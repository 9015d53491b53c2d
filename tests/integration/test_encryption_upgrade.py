"""A data directory written before encryption is encrypted in place at the next start; rotation.

The first stack runs without a master key (``VP_MASTER_KEY`` empty: plaintext at rest,
as before this version). The second starts with the env file's key: the coordinator
gives each client a data key and has the workers re-encrypt every collection in place,
logged, once (a marker records it). Every vector and metadata string reads back the
same, and none is left in plaintext on disk.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from coordinator.encryption_duty import UPGRADE_MARKER
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 8
N = 40
WORD = "quince-harbour-2207"


def _client(stack: Stack) -> str:
    with stack.admin() as admin:
        r = admin.post("/admin/v1/clients", json={"name": "old", "email": "o@example.com"})
        r.raise_for_status()
        cid = r.json()["client_id"]
        r = admin.post(
            f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read", "write", "manage"]}
        )
        r.raise_for_status()
        return str(r.json()["api_key"])


def _has_plaintext(root: Path, data: np.ndarray) -> bool:
    needles = [WORD.encode(), *(row[:3].tobytes() for row in data)]
    blobs = [p.read_bytes() for p in root.rglob("*") if p.is_file()]
    return any(n in blob for blob in blobs for n in needles)


def test_plaintext_data_is_encrypted_in_place_at_start(tmp_path: Path) -> None:
    data = np.random.default_rng(3).standard_normal((N, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(N)]
    with running_stack(tmp_path, VP_MASTER_KEY="") as stack:
        key = _client(stack)
        with stack.client(key) as c:
            for name, index in (("graph", "hnsw"), ("flat", "flat")):
                spec = {"name": name, "dimension": DIM, "metric": "l2", "index": index}
                assert c.post("/v1/collections", json=spec).status_code == 201
                body = {
                    "ids": ids,
                    "values_b64": base64.b64encode(data.tobytes()).decode(),
                    "metadata": [{"w": WORD} for _ in ids],
                }
                assert c.post(f"/v1/collections/{name}/upsert", json=body).status_code == 200
    hot = tmp_path / "hot"
    assert _has_plaintext(hot, data)
    assert not (tmp_path / UPGRADE_MARKER).exists()

    with running_stack(tmp_path) as stack:
        deadline = time.monotonic() + 30
        while not (tmp_path / UPGRADE_MARKER).exists():
            assert time.monotonic() < deadline, "".join(stack.output[-30:])
            time.sleep(0.1)
        assert any("encrypted 2 collections in place" in line for line in stack.output)
        with stack.client(key) as c:
            for name in ("graph", "flat"):
                r = c.post(f"/v1/collections/{name}/fetch", json={"ids": ["v5", "v39"]})
                assert r.status_code == 200, r.text
                got = r.json()["vectors"]
                assert np.asarray(got["v5"]["values"], np.float32).tobytes() == data[5].tobytes()
                assert got["v39"]["metadata"] == {"w": WORD}
        # Then a rotation: 202 at once, the event once every file is under version 2.
        with stack.admin() as admin:
            cid = admin.get("/admin/v1/clients").json()["clients"][0]["client_id"]
            backup_id = admin.post(f"/admin/v1/clients/{cid}/backups", json={}).json()[
                "backup_id"
            ]  # taken under key version 1

            def backed_up() -> bool:
                listed = admin.get(f"/admin/v1/clients/{cid}/backups").json()["backups"]
                return any(b["status"] == "complete" for b in listed)

            deadline = time.monotonic() + 30
            while not backed_up():
                assert time.monotonic() < deadline, "".join(stack.output[-30:])
                time.sleep(0.1)
            r = admin.post(f"/admin/v1/clients/{cid}/rotate-key", json={"reason": "yearly"})
            assert r.status_code == 202, r.text
            assert r.json() == {"key_version": 2, "status": "rotating"}
            deadline = time.monotonic() + 30
            params = {"type": "client.data_key_rotated", "client_id": cid}
            while not (events := admin.get("/admin/v1/events", params=params).json()["events"]):
                assert time.monotonic() < deadline, "".join(stack.output[-30:])
                time.sleep(0.1)
            assert events[0]["data"]["key_version"] == 2 and events[0]["data"]["reason"] == "yearly"
            missing = admin.post("/admin/v1/clients/cnope/rotate-key", json={})
            assert missing.status_code == 404
        for name in ("graph", "flat"):
            manifest = orjson.loads((hot / cid / name / "manifest.json").read_bytes())
            assert manifest["key_version"] == 2
        with stack.client(key) as c:
            r = c.post("/v1/collections/graph/fetch", json={"ids": ["v7"]})
            values = r.json()["vectors"]["v7"]["values"]
            assert np.asarray(values, np.float32).tobytes() == data[7].tobytes()
        # The backup taken under the retired key still restores and reads back.
        with stack.admin() as admin:
            body = {"backup_id": backup_id, "into_collection_suffix": "_r"}
            r = admin.post(f"/admin/v1/clients/{cid}/restore", json=body)
            assert r.status_code == 202 and r.json()["status"] == "complete", r.text
        with stack.client(key) as c:
            r = c.post("/v1/collections/graph_r/fetch", json={"ids": ["v9"]})
            assert r.status_code == 200, r.text
            values = r.json()["vectors"]["v9"]["values"]
            assert np.asarray(values, np.float32).tobytes() == data[9].tobytes()
    assert not _has_plaintext(hot, data)
