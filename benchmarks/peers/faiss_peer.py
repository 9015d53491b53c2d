"""Raw FAISS in-process: the floor every system is compared with.

The graph is built with every core (as the servers may), queries run on one FAISS
thread each (c16: 16 Python threads, FAISS releases the GIL).
"""

from __future__ import annotations

import os
import time
from typing import Any

import faiss
import numpy as np

from benchmarks.data import Dataset
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M, Figures, sweep_and_time
from workers.hnsw_index import preset_levels


def build_graph(
    vectors: np.ndarray, levels: np.ndarray | None = None, keep_pruned: bool = False
) -> tuple[Any, float, float]:
    """The HNSW graph of ``vectors`` built with every core (at preset ``levels``, 1-based,
    if given; else FAISS draws them; ``keep_pruned``: level-0 lists filled with the
    candidates the neighbour heuristic pruned): graph, wall and CPU seconds."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M)
    hnsw.hnsw.efConstruction = EF_CONSTRUCTION
    hnsw.keep_max_size_level0 = keep_pruned
    if levels is not None:
        preset_levels(hnsw, levels)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        hnsw.add(vectors)
    finally:
        faiss.omp_set_num_threads(1)
    return hnsw, time.perf_counter() - started, time.process_time() - cpu


def build_seconds(vectors: np.ndarray) -> float:
    """Wall seconds raw FAISS takes to build the graph of ``vectors`` with every core,
    now: the baseline timed just before each server system (see run._attempt)."""
    _, wall, _ = build_graph(vectors)
    return wall


def run(data: Dataset, exact_queries: int) -> Figures:
    figures = Figures("raw FAISS (in-process)")
    dim = data.vectors.shape[1]
    hnsw, figures.indexed_s, figures.indexed_cpu_s = build_graph(data.vectors)
    figures.ingest_vps = len(data.vectors) / figures.indexed_s
    figures.memory_mib = len(faiss.serialize_index(hnsw)) / 2**20
    figures.notes.append(
        f"graph built with {os.cpu_count()} threads; memory is the index's serialized size"
    )
    flat = faiss.IndexFlatL2(dim)
    flat.add(data.vectors)

    def searcher(ef: int | None) -> Any:
        params = None
        if ef is not None:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
        index = flat if ef is None else hnsw

        def runner(_: int) -> Any:
            def ask(q: np.ndarray) -> list[int]:
                _, rows = index.search(q[None, :], 10, params=params)
                return [int(x) for x in rows[0]]

            return ask

        return runner

    # Own CPU is the server CPU here: the process searching is the one measured.
    sweep_and_time(figures, searcher, data.queries, data.truth, [os.getpid()], exact_queries)
    return figures
