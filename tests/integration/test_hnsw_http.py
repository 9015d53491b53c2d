"""HNSW collections through a real ``vectorpanda up``: parameters, recall, deletes, batches."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

DIM = 32


def test_hnsw_collection_round_trip(stack: Stack) -> None:
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((10, DIM))
    data = (centers[rng.integers(0, 10, 2000)] + 0.5 * rng.standard_normal((2000, DIM))).astype(
        np.float32
    )
    ids = [f"v{i}" for i in range(2000)]
    key = stack.new_client("hnsw-http")
    with stack.client(key) as c:
        spec = {"name": "h", "dimension": DIM, "metric": "cosine", "index": "hnsw",
                "hnsw": {"m": 16, "ef_construction": 100}}  # fmt: skip
        r = c.post("/v1/collections", json=spec)
        assert r.status_code == 201, r.text
        assert r.json()["index"] == "hnsw"
        for start in range(0, 2000, 1000):
            packed = base64.b64encode(data[start : start + 1000].tobytes()).decode()
            r = c.post("/v1/collections/h/upsert",
                       json={"ids": ids[start : start + 1000], "values_b64": packed})  # fmt: skip
            assert r.status_code == 200, r.text
        # Queryable at once (fresh buffer), exact for its own vector.
        r = c.post("/v1/collections/h/query", json={"vector": data[1999].tolist(), "top_k": 1})
        assert r.json()["matches"][0]["id"] == "v1999"
        queries = data[:50] + 0.01
        unit = data / np.linalg.norm(data, axis=1, keepdims=True)
        qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        truth = np.argsort(-(qn @ unit.T), axis=1)[:, :10]
        r = c.post("/v1/collections/h/query", json={"vectors": queries.tolist(), "top_k": 10})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        hits = sum(
            len({m["id"] for m in res["matches"]} & {f"v{j}" for j in truth[i]})
            for i, res in enumerate(results)
        )
        assert hits / 500 >= 0.95
        # Deleted and replaced vectors never come back.
        r = c.post("/v1/collections/h/delete", json={"ids": ids[:25]})
        assert r.json() == {"deleted": 25}
        flipped = {"id": "v30", "values": (-data[30]).tolist(), "metadata": {"flipped": True}}
        r = c.post("/v1/collections/h/upsert", json={"vectors": [flipped]})
        assert r.status_code == 200
        r = c.post("/v1/collections/h/query",
                   json={"vectors": data[:40].tolist(), "top_k": 5})  # fmt: skip
        for res in r.json()["results"]:
            got = {m["id"] for m in res["matches"]}
            assert not got & set(ids[:25]) and "v30" not in got
        r = c.get("/v1/collections/h")
        assert r.json()["vector_count"] == 1975
