"""How well FAISS's HNSW insertion keeps the cores busy, by the size of each ``add`` call.

    .venv/bin/python -m benchmarks.graph_steps [--base 50000] [--dim 384] [--threads 2]
        [--steps 1000 2500 10000 25000]

The worker moves fresh vectors into the graph in steps (workers.hnsw_index,
``INSERT_CHUNK_IDLE`` up to ``INSERT_CHUNK_IDLE_MAX``, each kept under ``IDLE_STEP_S``
so that a query arriving meanwhile waits little). This builds a graph of ``base``
clustered vectors (M=16, ef_construction=100, as the peers benchmark), then, for each
step size, adds the next 50,000 vectors in steps of that size with ``threads`` OpenMP
threads (``OMP_WAIT_POLICY=PASSIVE`` as the workers run), from a fresh copy of the
same base graph, and prints wall and CPU time per 1,000 vectors and the share of the
threads' time spent working (CPU / wall / threads).

FAISS 1.15 builds deterministically: each ``add`` call inserts each level's new nodes
in batches of 1, 1, 2, 4, ... (up to 2 % of the graph), and a batch of 100 or fewer
runs on one thread; so every call starts with a stretch on one core, and a small call
keeps the other cores idle for a larger share of its time.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when OpenMP loads, as workers do

import faiss
import numpy as np

from benchmarks.data import gaussian_mixture
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M
from benchmarks.timing import own_cpu

ADDED = 50_000


def _graph(vectors: np.ndarray, threads: int) -> faiss.IndexHNSWFlat:
    graph = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    faiss.omp_set_num_threads(threads)
    graph.add(vectors)
    return graph


def measure(base: faiss.IndexHNSWFlat, more: np.ndarray, step: int, threads: int) -> str:
    """One markdown row: ``more`` added to a copy of ``base`` in calls of ``step``."""
    graph = faiss.clone_index(base)
    faiss.omp_set_num_threads(threads)
    wall = cpu = 0.0
    for start in range(0, len(more), step):
        t0, c0 = time.perf_counter(), own_cpu()
        graph.add(more[start : start + step])
        wall += time.perf_counter() - t0
        cpu += own_cpu() - c0
    per = 1000 / len(more)
    busy = cpu / wall / threads
    return f"| {step:,} | {wall * per * 1e3:.0f} | {cpu * per * 1e3:.0f} | {busy:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2500, 10_000, ADDED])
    args = parser.parse_args()
    data = gaussian_mixture(args.base + ADDED, args.dim, 10).vectors
    vectors = np.ascontiguousarray(data, dtype=np.float32)
    base = _graph(vectors[: args.base], args.threads)
    more = vectors[args.base :]
    print(
        f"FAISS {faiss.__version__}, {args.threads} threads, "
        f"{ADDED:,} vectors added to a graph of {args.base:,}"
    )
    print("| vectors per add | wall ms per 1,000 | CPU ms per 1,000 | threads busy |")
    print("|---|---|---|---|")
    for step in args.steps:
        print(measure(base, more, step, args.threads), flush=True)


if __name__ == "__main__":
    main()
