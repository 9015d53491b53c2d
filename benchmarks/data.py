"""Benchmark data: a Gaussian mixture (clustered like real embeddings) with held-out
queries and their exact top-k."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


@dataclass(frozen=True)
class Dataset:
    vectors: np.ndarray  # (n, d) float32
    queries: np.ndarray  # (q, d) float32, drawn from the same mixture, not in `vectors`
    truth: np.ndarray  # (q, k) int64 row numbers of the exact nearest neighbours (L2)
    clusters: int


def gaussian_mixture(
    n: int,
    dim: int,
    queries: int,
    clusters: int = 100,
    k: int = 10,
    seed: int = 0,
    grouped: bool = False,
) -> Dataset:
    """``n`` + ``queries`` points around ``clusters`` random centres; truth by exact L2 search.

    ``grouped``: the ``n`` points come cluster by cluster, as documents' chunks arrive one
    document after another (the queries stay in random order)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * 4.0
    spread = rng.uniform(0.5, 1.5, size=clusters).astype(np.float32)
    which = rng.integers(0, clusters, size=n + queries)
    if grouped:
        which[:n].sort()
    points = (
        centres[which]
        + rng.standard_normal((n + queries, dim), dtype=np.float32) * (spread[which, None])
    )
    points = np.ascontiguousarray(points, dtype=np.float32)
    vectors, held_out = points[:n], points[n:]
    exact = faiss.IndexFlatL2(dim)
    exact.add(vectors)
    _, truth = exact.search(held_out, k)
    return Dataset(vectors, np.ascontiguousarray(held_out), truth, clusters)


def standard_normal(n: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Unclustered float32 vectors and queries (seed 0), for the quick throughput checks."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n, dim)).astype(np.float32)
    return data, rng.standard_normal((queries, dim)).astype(np.float32)


def recall_at_k(found: list[list[int]], truth: np.ndarray, k: int = 10) -> float:
    """Mean fraction of the exact top-k found in each answer's top-k."""
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))
