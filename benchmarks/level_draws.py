"""How much recall at one ef_search depends on the random HNSW levels alone.

    .venv/bin/python -m benchmarks.level_draws [--count 100000] [--dim 384]
        [--clusters 100] [--seeds 1 2 3 4] [--peers]

Builds raw FAISS graphs (M=16, ef_construction=100, as the peers benchmark, every
core) of the same vectors in the same order, once with the levels FAISS draws itself
and once per seed with levels drawn as the worker draws them (workers.hnsw_index:
FAISS's own distribution, given to FAISS as preset levels), and prints recall@10 at
ef_search 32, 64 and 128 for each. Nothing but the levels differs between the graphs,
so the spread is what a level draw alone does: on data of well-separated clusters
(the default: Gaussian clusters, ``benchmarks.data.gaussian_mixture``) a graph
reaches each cluster only through the few nodes of its upper levels, and which nodes
those are moves recall at a fixed ef_search by whole points. ``--peers`` uses the
peers benchmark's real sentence embeddings instead (``benchmarks.peers.dataset``).
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np

from benchmarks.data import Dataset, gaussian_mixture, recall_at_k
from benchmarks.peers.faiss_peer import build_graph
from benchmarks.peers.measure import HNSW_M
from workers.hnsw_index import draw_levels, level_cdf

EFS = (32, 64, 128)


def build_and_recall(data: Dataset, levels: np.ndarray | None) -> tuple[str, float]:
    """Recall@10 at each of EFS (as text) and the build's wall seconds."""
    graph, took, _ = build_graph(data.vectors, levels)
    recalls = []
    for ef in EFS:
        graph.hnsw.efSearch = ef
        _, found = graph.search(data.queries, 10)
        recalls.append(recall_at_k(found.tolist(), data.truth))
    return " / ".join(f"{r:.4f}" for r in recalls), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--peers", action="store_true", help="real sentence embeddings")
    args = parser.parse_args()
    if args.peers:
        from benchmarks.peers import dataset

        data, label = dataset.real(args.count, 1000)
    else:
        data = gaussian_mixture(args.count, args.dim, 1000, clusters=args.clusters)
        label = f"{args.count:,} x {args.dim} in {args.clusters} Gaussian clusters"
    cdf = level_cdf(faiss.IndexHNSWFlat(data.vectors.shape[1], HNSW_M))
    print(f"{label}; recall@10 at ef_search {' / '.join(map(str, EFS))}")
    recalls, took = build_and_recall(data, None)
    print(f"  levels FAISS draws itself: {recalls}  (built in {took:.1f} s)", flush=True)
    for seed in args.seeds:
        levels = draw_levels(cdf, np.random.default_rng(seed), len(data.vectors))
        recalls, took = build_and_recall(data, levels)
        print(f"  levels drawn with seed {seed}: {recalls}  (built in {took:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
