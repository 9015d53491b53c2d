"""The whole service over HTTP through the SDK, on the same data as the baseline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.data import Dataset, recall_at_k
from benchmarks.timing import run_concurrent
from vectorpanda_client import Client, InvalidError, QueryResult

TOP_K = 10


def _rows(results: QueryResult | list[QueryResult]) -> list[list[int]]:
    listed = results if isinstance(results, list) else [results]
    return [[int(i) for i in r.ids] for r in listed]


def load(client: Client, name: str, kind: str, data: Dataset) -> float | None:
    """Create and fill a collection; vectors upserted per second, or None if ``kind`` is refused."""
    try:
        client.create_collection(name, data.vectors.shape[1], metric="l2", index=kind)
    except InvalidError as exc:
        if kind == "hnsw":
            print(f"  the service refused an hnsw collection ({exc}); skipping hnsw")
            return None
        raise
    ids = [str(i) for i in range(len(data.vectors))]
    started = time.perf_counter()
    client.collection(name).upsert(ids, data.vectors)
    return len(ids) / (time.perf_counter() - started)


def measure(
    url: str,
    key: str,
    name: str,
    data: Dataset,
    ef_search: int | None,
    batch: int,
    concurrencies: tuple[int, ...],
) -> dict[str, Any]:
    """recall@10 and throughput over HTTP, single queries and batches, at each concurrency."""
    clients = [Client(url, key) for _ in range(max(concurrencies))]
    try:
        col = clients[0].collection(name)
        found = _rows(col.query(data.queries, top_k=TOP_K, ef_search=ef_search))
        out: dict[str, Any] = {"recall": recall_at_k(found, data.truth)}
        singles = list(data.queries)
        batches = [data.queries[i : i + batch] for i in range(0, len(data.queries), batch)]

        def runner(w: int) -> Any:
            target = clients[w].collection(name)

            def ask(q: Any) -> int:
                return len(_rows(target.query(q, top_k=TOP_K, ef_search=ef_search)))

            return ask

        for conc in concurrencies:
            out[f"single_c{conc}"] = run_concurrent(conc, singles, runner)
            out[f"batched_c{conc}"] = run_concurrent(conc, batches, runner)
        return out
    finally:
        for c in clients:
            c.close()


def run_service(
    url: str,
    key: str,
    data: Dataset,
    ef_values: list[int],
    batch: int,
    concurrencies: tuple[int, ...],
    settle: Callable[[float], float],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Service figures keyed like the baseline's, and notes on anything skipped.

    ``settle(budget_s)`` waits for the service's background work (graph insertion)
    to finish and returns the seconds it waited.
    """
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    with Client(url, key) as client:
        print("service: loading flat")
        rate = load(client, "bench-flat", "flat", data)
        results["flat"] = {
            "upserts_per_s": rate,
            **measure(url, key, "bench-flat", data, None, batch, concurrencies),
        }
        if not ef_values:
            return results, notes
        print("service: loading hnsw")
        rate = load(client, "bench-hnsw", "hnsw", data)
        if rate is None:
            notes.append("hnsw skipped: the service answered 422 for an hnsw collection")
            return results, notes
        waited = settle(len(data.vectors) / 300)
        notes.append(f"hnsw: waited {waited:.0f} s for background graph insertion (worker idle)")
        for ef in ef_values:
            print(f"service: hnsw ef_search={ef}")
            figures = measure(url, key, "bench-hnsw", data, ef, batch, concurrencies)
            results[f"hnsw ef={ef}"] = {"upserts_per_s": rate, **figures}
    return results, notes
