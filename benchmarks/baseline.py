"""Raw FAISS in-process: the baseline every service figure is compared with."""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from benchmarks.data import Dataset, recall_at_k
from benchmarks.timing import Throughput, run_concurrent

# The server's defaults (api/schemas.py HnswParams, workers/hnsw_index.py)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200


def build(kind: str, data: Dataset) -> tuple[Any, float]:
    """The index of ``kind`` with every vector added, and vectors added per second."""
    dim = data.vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatL2(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    started = time.perf_counter()
    index.add(data.vectors)
    return index, len(data.vectors) / (time.perf_counter() - started)


def measure(
    index: Any, data: Dataset, ef_search: int | None, batch: int, concurrencies: tuple[int, ...]
) -> dict[str, Any]:
    """recall@10 and throughput: single queries and batches, at each concurrency."""
    params = None
    if ef_search is not None:
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef_search

    def search(q: np.ndarray) -> np.ndarray:
        _, rows = index.search(q, 10, params=params) if params else index.search(q, 10)
        return np.asarray(rows)

    found = search(data.queries).tolist()
    out: dict[str, Any] = {"recall": recall_at_k(found, data.truth)}
    singles = [data.queries[i : i + 1] for i in range(len(data.queries))]
    batches = [data.queries[i : i + batch] for i in range(0, len(data.queries), batch)]

    def runner(_: int) -> Any:
        return lambda q: len(search(q))

    for conc in concurrencies:
        out[f"single_c{conc}"] = run_concurrent(conc, singles, runner)
        out[f"batched_c{conc}"] = run_concurrent(conc, batches, runner)
    return out


def run_baseline(
    data: Dataset, ef_values: list[int], batch: int, concurrencies: tuple[int, ...]
) -> dict[str, dict[str, Any]]:
    """Baseline figures for flat and for hnsw at each ef_search; FAISS on one thread."""
    faiss.omp_set_num_threads(1)
    results: dict[str, dict[str, Any]] = {}
    flat, rate = build("flat", data)
    results["flat"] = {"upserts_per_s": rate, **measure(flat, data, None, batch, concurrencies)}
    if ef_values:
        hnsw, rate = build("hnsw", data)
        for ef in ef_values:
            figures = measure(hnsw, data, ef, batch, concurrencies)
            results[f"hnsw ef={ef}"] = {"upserts_per_s": rate, **figures}
    return results


__all__ = ["Throughput", "run_baseline"]
