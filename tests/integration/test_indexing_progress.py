"""``GET /v1/collections/{name}/indexing`` and the SDK's ``indexing()``: how much of a
bulk import the HNSW graph holds, until it holds all of it."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from tests.stack import Stack
from vectorpanda_client import Client, Indexing, NotFoundError

pytestmark = pytest.mark.integration

DIM = 32


def test_an_import_is_reported_until_the_graph_holds_all_of_it(stack: Stack) -> None:
    key = stack.new_client("indexing-progress", tier="standard")
    vectors = np.random.default_rng(4).standard_normal((6000, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(len(vectors))]
    with Client(stack.url, key) as client:
        client.create_collection("graph", DIM, metric="l2", index="hnsw")
        client.create_collection("scan", DIM, metric="l2", index="flat")
        graph, scan = client.collection("graph"), client.collection("scan")
        graph.upsert(ids, vectors)
        scan.upsert(ids, vectors)

        seen: list[Indexing] = []
        deadline = time.monotonic() + 120
        while True:
            now = graph.indexing()
            seen.append(now)
            assert now.vector_count == 6000
            assert now.indexed + now.pending == 6000 and now.pending >= 0
            assert now.fully_indexed == (now.pending == 0)
            if now.fully_indexed:
                break
            assert time.monotonic() < deadline, seen[-5:]
            time.sleep(0.05)
        pending = [s.pending for s in seen]
        assert pending == sorted(pending, reverse=True)  # nothing new came: it only drains
        assert seen[-1] == Indexing(vector_count=6000, indexed=6000, pending=0, fully_indexed=True)
        assert scan.indexing() == Indexing(6000, 6000, 0, True)  # a flat collection: always

        with pytest.raises(NotFoundError):
            client.collection("missing").indexing()

    raw = httpx.get(
        f"{stack.url}/v1/collections/graph/indexing", headers={"Authorization": f"Bearer {key}"}
    )
    assert raw.status_code == 200
    assert raw.json() == {
        "name": "graph",
        "index": "hnsw",
        "vector_count": 6000,
        "indexed": 6000,
        "pending": 0,
        "fully_indexed": True,
    }
    # Only the owner's keys see it; a request without a key is refused
    other = stack.new_client("indexing-other")
    foreign = httpx.get(
        f"{stack.url}/v1/collections/graph/indexing", headers={"Authorization": f"Bearer {other}"}
    )
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{stack.url}/v1/collections/graph/indexing").status_code == 401
