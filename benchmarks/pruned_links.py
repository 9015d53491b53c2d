"""Whether FAISS's graph should keep pruned candidates, as pgvector's does.

    .venv/bin/python -m benchmarks.pruned_links [--count 100000] [--rounds 1]

pgvector reaches a recall target at a smaller ef_search than FAISS on the peers'
corpus in most runs (docs/performance.md). Its neighbour selection fills each node's
list with candidates the diversity heuristic pruned (the HNSW paper's
``keepPrunedConnections``); FAISS keeps only the diverse ones unless told otherwise
(``IndexHNSW.keep_max_size_level0``, level 0 only). This builds raw FAISS graphs of the
peers benchmark's vectors (``benchmarks.peers.dataset``; M=16, ef_construction=100,
every core) both ways, and prints for each the build's wall seconds, the mean number of
level-0 links per node, and recall@10 and one-thread queries/s (one query per call, as
a server answers them) over an ef_search sweep: so the two graphs are compared at equal
recall, not at equal ef_search.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import faiss
import numpy as np

from benchmarks.data import Dataset
from benchmarks.peers.dataset import load
from benchmarks.peers.faiss_peer import build_graph
from benchmarks.peers.measure import HNSW_M, recall_at_k

EFS = (16, 20, 24, 28, 32, 40, 48, 64, 96, 112, 128)


def level0_links(graph: Any) -> float:
    """Mean links per node on level 0 (of at most 2M)."""
    hnsw = graph.hnsw
    neighbors = faiss.vector_to_array(hnsw.neighbors)
    offsets = faiss.vector_to_array(hnsw.offsets)[: graph.ntotal].astype(np.int64)
    level0 = neighbors[offsets[:, None] + np.arange(2 * HNSW_M)]
    return float((level0 >= 0).sum(axis=1).mean())


def sweep(graph: Any, data: Dataset) -> list[tuple[int, float, float]]:
    """(ef_search, recall@10, queries/s on one thread, one query per call)."""
    rows = []
    for ef in EFS:
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        found = []
        started = time.perf_counter()
        for query in data.queries:
            _, ids = graph.search(query[None, :], 10, params=params)
            found.append(ids[0].tolist())
        took = time.perf_counter() - started
        rows.append((ef, recall_at_k(found, data.truth), len(data.queries) / took))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=1, help="builds of each kind, alternated")
    args = parser.parse_args()
    data, label = load(args.count, args.queries)
    print(f"data: {label}")
    for round_ in range(args.rounds):
        for keep in (False, True):
            graph, took, _ = build_graph(data.vectors, keep_pruned=keep)
            kind = "pruned candidates kept" if keep else "FAISS's default"
            print(
                f"round {round_ + 1}, {kind}: built in {took:.1f} s, "
                f"{level0_links(graph):.1f} level-0 links per node (of {2 * HNSW_M})"
            )
            for ef, recall, qps in sweep(graph, data):
                print(f"  ef_search {ef:4d}  recall@10 {recall:.4f}  {qps:7,.0f} q/s")


if __name__ == "__main__":
    main()
