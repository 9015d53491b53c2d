"""Metadata filters through a real ``vectorpanda up``: exact filtered top-k, 422s, delete."""

from __future__ import annotations

import numpy as np
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

DIM = 8


def _exact(data: np.ndarray, q: np.ndarray, rows: list[int], k: int) -> list[str]:
    scores = ((data[rows] - q) ** 2).sum(axis=1)
    return [f"v{rows[j]}" for j in np.argsort(scores, kind="stable")[:k]]


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_filtered_queries_are_exact_and_delete_by_filter_is_durable(
    stack: Stack, index: str
) -> None:
    rng = np.random.default_rng(11)
    data = rng.standard_normal((300, DIM)).astype(np.float32)
    colors = ["red", "green", "blue"]
    meta = [
        {"color": colors[i % 3], "price": i, "tags": ["sale"] if i % 10 == 0 else ["new"]}
        for i in range(300)
    ]
    key = stack.new_client(f"filters-{index}")
    with stack.client(key) as c:
        r = c.post("/v1/collections", json={"name": "items", "dimension": DIM, "metric": "l2",
                                             "index": index})  # fmt: skip
        assert r.status_code == 201, r.text
        rows = [
            {"id": f"v{i}", "values": data[i].tolist(), "metadata": meta[i]} for i in range(300)
        ]
        assert c.post("/v1/collections/items/upsert", json={"vectors": rows}).status_code == 200
        q = rng.standard_normal(DIM).astype(np.float32)
        cases = [
            ({"color": "red"}, lambda m: m["color"] == "red"),
            ({"price": {"$gte": 100, "$lt": 150}}, lambda m: 100 <= m["price"] < 150),
            ({"tags": "sale"}, lambda m: "sale" in m["tags"]),
            (
                {"$or": [{"color": {"$in": ["green"]}}, {"price": {"$lt": 5}}]},
                lambda m: m["color"] == "green" or m["price"] < 5,
            ),
            (
                {"color": {"$nin": ["red", "blue"]}, "size": {"$exists": False}},
                lambda m: m["color"] == "green",
            ),
        ]
        for doc, test in cases:
            members = [i for i in range(300) if test(meta[i])]
            r = c.post("/v1/collections/items/query",
                       json={"vector": q.tolist(), "top_k": 10, "filter": doc,
                             "include_metadata": True, "ef_search": 300})  # fmt: skip
            assert r.status_code == 200, r.text
            matches = r.json()["matches"]
            assert [m["id"] for m in matches] == _exact(data, q, members, 10), doc
            assert all(test(m["metadata"]) for m in matches)
        for bad, field in [
            ({"price": {"$gt": [1]}}, "price"),
            ({"color": {"$regex": "r"}}, "color"),
        ]:
            r = c.post("/v1/collections/items/query",
                       json={"vector": q.tolist(), "filter": bad})  # fmt: skip
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid" and field in r.json()["error"]["message"]
        r = c.post("/v1/collections/items/delete", json={"filter": {"color": "red"}})
        assert r.status_code == 200 and r.json() == {"deleted": 100}
        r = c.get("/v1/collections/items")
        assert r.json()["vector_count"] == 200
        r = c.post("/v1/collections/items/query",
                   json={"vector": q.tolist(), "top_k": 300, "include_metadata": True})  # fmt: skip
        assert {m["metadata"]["color"] for m in r.json()["matches"]} == {"green", "blue"}
