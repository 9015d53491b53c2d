"""Exact search agrees with a NumPy brute force for every metric."""

from __future__ import annotations

import numpy as np
import pytest

from workers.collection import Collection
from workers.collection_spec import parse_collection_spec
from workers.flat_index import BLAS_BATCH_MIN
from workers.tenant_store import TenantStore

METRICS = ["cosine", "l2", "ip"]


def _make(store: TenantStore, metric: str, dim: int = 16) -> Collection:
    spec = parse_collection_spec(
        {"collection": f"c-{metric}", "dimension": dim, "metric": metric, "index": "flat"}
    )
    store.create_collection(spec)
    return store.collection(spec.name)


def _brute_force(base: np.ndarray, queries: np.ndarray, metric: str, k: int):
    b, q = base.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    if metric == "l2":
        scores = ((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = q @ b.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n_queries", [1, 3, BLAS_BATCH_MIN + 5])
def test_query_matches_brute_force(store: TenantStore, metric: str, n_queries: int) -> None:
    rng = np.random.default_rng(7)
    coll = _make(store, metric)
    base = rng.standard_normal((300, 16), dtype=np.float32)
    ids = [f"id{i}" for i in range(300)]
    coll.upsert(ids, [{"i": i} for i in range(300)], base)
    queries = rng.standard_normal((n_queries, 16), dtype=np.float32)
    results, values = coll.query(queries, 10, include_metadata=True, include_values=True)
    order, expected = _brute_force(base, queries, metric, 10)
    assert len(results) == n_queries
    for qi, result in enumerate(results):
        assert result["ids"] == [ids[j] for j in order[qi]]
        np.testing.assert_allclose(result["scores"], expected[qi], rtol=1e-4, atol=1e-4)
        assert result["metadata"] == [{"i": int(j)} for j in order[qi]]
    assert values is not None
    assert values.tobytes() == base[order.reshape(-1)].tobytes()


@pytest.mark.parametrize("metric", METRICS)
def test_top_k_larger_than_count_returns_all(store: TenantStore, metric: str) -> None:
    coll = _make(store, metric, dim=4)
    base = np.random.default_rng(1).standard_normal((5, 4), dtype=np.float32)
    coll.upsert([f"v{i}" for i in range(5)], [None] * 5, base)
    results, values = coll.query(base[:2], 1000, include_metadata=False, include_values=False)
    assert [len(r["ids"]) for r in results] == [5, 5]
    assert sorted(results[0]["ids"]) == [f"v{i}" for i in range(5)]
    assert "metadata" not in results[0] and values is None


def test_empty_collection_returns_empty_results(store: TenantStore) -> None:
    coll = _make(store, "l2", dim=4)
    results, values = coll.query(np.ones((2, 4), np.float32), 3, True, True)
    assert results == [{"ids": [], "scores": [], "metadata": []}] * 2
    assert values is not None and values.shape == (0, 4)


def test_cosine_zero_vectors_score_zero_not_nan(store: TenantStore) -> None:
    coll = _make(store, "cosine", dim=3)
    vectors = np.array([[0, 0, 0], [1, 0, 0]], dtype=np.float32)
    coll.upsert(["zero", "x"], [None, None], vectors)
    results, _ = coll.query(np.array([[1, 0, 0], [0, 0, 0]], np.float32), 2, False, False)
    assert results[0]["ids"] == ["x", "zero"]
    assert results[0]["scores"] == pytest.approx([1.0, 0.0])
    assert results[1]["scores"] == [0.0, 0.0]
    _, _, fetched = coll.fetch(["zero"])
    assert fetched.tobytes() == vectors[:1].tobytes()


def test_l2_scores_are_squared_distances(store: TenantStore) -> None:
    coll = _make(store, "l2", dim=2)
    coll.upsert(["a", "b"], [None, None], np.array([[3, 4], [1, 0]], np.float32))
    results, _ = coll.query(np.zeros((1, 2), np.float32), 2, False, False)
    assert results[0]["ids"] == ["b", "a"]
    assert results[0]["scores"] == pytest.approx([1.0, 25.0])
