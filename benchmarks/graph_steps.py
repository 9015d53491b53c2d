"""How well FAISS's HNSW insertion keeps the cores busy, by the size of each ``add`` call.

    .venv/bin/python -m benchmarks.graph_steps [--base 50000] [--dim 384] [--threads 2]
        [--steps 1000 2500 10000 50000] [--hold-upper]

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
keeps the other cores idle for a larger share of its time. ``--hold-upper`` also
measures the way around it that the worker takes (workers.hnsw_index,
``HOLD_UPPER_BATCH``): the levels of the new nodes are drawn beforehand (FAISS's
own distribution, given to FAISS as preset levels), the nodes of level 0 go in with
their step, and the few nodes of higher levels are held back and inserted together
once ``HOLD_BATCH`` of them are waiting, so that their batches are large enough for
every thread. Recall@10 at ef_search 32 (against the exact top 10 of all vectors)
shows what either way does to the graph.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import cast

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when OpenMP loads, as workers do

import faiss
import numpy as np

from benchmarks.data import gaussian_mixture
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M
from benchmarks.timing import own_cpu
from workers.hnsw_index import draw_levels, level_cdf, preset_levels

ADDED = 50_000
HOLD_BATCH = 1000
EF_SEARCH = 32


def _graph(vectors: np.ndarray, threads: int) -> faiss.IndexHNSWFlat:
    graph = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    faiss.omp_set_num_threads(threads)
    graph.add(vectors)
    return graph


def _steps(count: int, step: int, levels: np.ndarray | None) -> list[np.ndarray]:
    """The rows of each ``add`` call, in order: every ``step`` rows, or (``levels``
    given) their level-0 rows, with the higher ones held until ``HOLD_BATCH`` wait."""
    calls: list[np.ndarray] = []
    held: list[np.ndarray] = []
    waiting = 0
    for start in range(0, count, step):
        rows = np.arange(start, min(start + step, count))
        if levels is None:
            calls.append(rows)
            continue
        upper = levels[rows] > 1
        held.append(rows[upper])
        waiting += int(upper.sum())
        calls.append(rows[~upper])
        if waiting >= HOLD_BATCH:
            calls.append(np.concatenate(held))
            held, waiting = [], 0
    if held:
        calls.append(np.concatenate(held))
    return [rows for rows in calls if len(rows)]


def measure(
    base: faiss.IndexHNSWFlat,
    more: np.ndarray,
    step: int,
    threads: int,
    queries: np.ndarray,
    truth: np.ndarray,
    hold_upper: bool = False,
) -> str:
    """One markdown row: ``more`` added to a copy of ``base`` in calls of ``step``."""
    graph = cast(faiss.IndexHNSWFlat, faiss.clone_index(base))
    faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(step)
    levels = draw_levels(level_cdf(graph), rng, len(more)) if hold_upper else None
    order = [np.arange(base.ntotal)]  # node -> row of all the vectors
    wall = cpu = 0.0
    for rows in _steps(len(more), step, levels):
        if levels is not None:
            preset_levels(graph, levels[rows])  # FAISS keeps them
        t0, c0 = time.perf_counter(), own_cpu()
        graph.add(np.ascontiguousarray(more[rows]))
        wall += time.perf_counter() - t0
        cpu += own_cpu() - c0
        order.append(base.ntotal + rows)
    graph.hnsw.efSearch = EF_SEARCH
    _, nodes = graph.search(queries, truth.shape[1])
    found = np.concatenate(order)[nodes]
    recall = np.mean([len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)])
    per = 1000 / len(more)
    busy = cpu / wall / threads
    way = "held back" if hold_upper else "with their step"
    return (
        f"| {step:,} | {way} | {wall * per * 1e3:.0f} | {cpu * per * 1e3:.0f} | {busy:.2f} "
        f"| {recall / truth.shape[1]:.4f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 2500, 10_000, ADDED])
    parser.add_argument(
        "--hold-upper", action="store_true", help="also with higher-level nodes held back"
    )
    args = parser.parse_args()
    data = gaussian_mixture(args.base + ADDED, args.dim, 1000)
    vectors = np.ascontiguousarray(data.vectors, dtype=np.float32)
    base = _graph(vectors[: args.base], args.threads)
    more = vectors[args.base :]
    print(
        f"FAISS {faiss.__version__}, {args.threads} threads, "
        f"{ADDED:,} vectors added to a graph of {args.base:,}"
    )
    print(
        "| vectors per add | nodes above level 0 | wall ms per 1,000 | CPU ms per 1,000 "
        f"| threads busy | recall@10, ef_search {EF_SEARCH} |"
    )
    print("|---|---|---|---|---|---|")
    ways = (False, True) if args.hold_upper else (False,)
    for step in args.steps:
        for hold in ways:
            row = measure(base, more, step, args.threads, data.queries, data.truth, hold)
            print(row, flush=True)


if __name__ == "__main__":
    main()
