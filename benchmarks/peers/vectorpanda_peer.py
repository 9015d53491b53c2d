"""VectorPanda: a real ``vectorpanda up`` in a temporary data dir, a premium client and
its key made through the admin API, driven by the repo's SDK (one client per thread)."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import Dataset
from benchmarks.peers import procstat, wrk
from benchmarks.peers.measure import (
    EF_CONSTRUCTION,
    HNSW_M,
    Figures,
    Point,
    settle,
    sweep_and_time,
)
from benchmarks.run import _premium_key
from tests.stack import running_stack
from vectorpanda_client import Client

HNSW, FLAT = "peers-hnsw", "peers-flat"
POLL_S = 0.1  # how often the benchmark asks whether the graph holds every vector


def _load(client: Client, name: str, kind: str, data: Dataset) -> float:
    hnsw = {"m": HNSW_M, "ef_construction": EF_CONSTRUCTION} if kind == "hnsw" else None
    client.create_collection(name, data.vectors.shape[1], metric="l2", index=kind, hnsw=hnsw)
    started = time.perf_counter()
    client.collection(name).upsert([str(i) for i in range(len(data.vectors))], data.vectors)
    return time.perf_counter() - started


def _until_indexed(client: Client, name: str, budget_s: float) -> float:
    """Seconds until GET .../indexing says the graph holds every vector (asked every
    POLL_S; not a read, so it does not keep graph building to one core)."""
    started = time.perf_counter()
    collection = client.collection(name)
    while time.perf_counter() - started < budget_s:
        if collection.indexing().fully_indexed:
            break
        time.sleep(POLL_S)
    return time.perf_counter() - started


def run(data: Dataset, exact_queries: int, workers: int, wrk_seconds: float | None) -> Figures:
    figures = Figures("VectorPanda (SDK)")
    with (
        tempfile.TemporaryDirectory(prefix="vp-peers-") as tmp,
        running_stack(Path(tmp), workers=workers) as stack,
    ):
        assert stack.proc is not None
        server = [stack.proc.pid]
        key = _premium_key(stack)
        with Client(stack.url, key) as client:
            cpu = procstat.cpu_seconds(server)
            sent = _load(client, HNSW, "hnsw", data)
            indexed = _until_indexed(client, HNSW, budget_s=1800)
            waited = settle(server, budget_s=1800)
            figures.indexed_cpu_s = procstat.cpu_seconds(server) - cpu
            figures.ingest_vps = len(data.vectors) / sent
            figures.indexed_s = sent + indexed
            figures.memory_mib = procstat.pss_mib(server)
            figures.rss_mib = procstat.rss_mib(server)
            figures.notes.append(
                "memory by process once indexed: "
                + "; ".join(
                    f"{role} {rss:.0f} MiB RSS ({pss:.0f} PSS)"
                    for _, role, rss, pss in procstat.each_process_mib(server)
                )
                + f"; the data: {len(data.vectors) * data.vectors.shape[1] * 4 / 2**20:.1f} MiB "
                "of raw vectors"
            )
            figures.notes.append(
                f"{workers} worker(s); indexed = upsert {sent:.1f} s + graph insertion "
                f"until the collection's indexing answer said fully indexed ({indexed:.1f} s, "
                f"asked every {POLL_S} s); server CPU to index counted until the server was "
                f"idle ({indexed + waited:.1f} s after the upsert, the graph's save included)"
            )
            _load(client, FLAT, "flat", data)
            settle(server, budget_s=600)
        clients = [Client(stack.url, key) for _ in range(16)]

        def searcher(ef: int | None) -> Callable[[int], Any]:
            def runner(w: int) -> Callable[[np.ndarray], list[int]]:
                col = clients[w].collection(HNSW if ef is not None else FLAT)

                def ask(q: np.ndarray) -> list[int]:
                    found = col.query(q, top_k=10, ef_search=ef)
                    return [int(i) for i in found.ids]

                return ask

            return runner

        def with_wrk(point: Point) -> None:
            if wrk_seconds is None:
                return
            name = HNSW if point.ef is not None else FLAT
            body: dict[str, Any] = {"vector": data.queries[0].tolist(), "top_k": 10}
            if point.ef is not None:
                body["ef_search"] = point.ef
            url = f"{stack.url}/v1/collections/{name}/query"
            for conc in (1, 16):
                point.runs[f"wrk c{conc}"] = wrk.run(
                    url, json.dumps(body), {"Authorization": f"Bearer {key}"},
                    conc, wrk_seconds, server,
                )  # fmt: skip

        try:
            sweep_and_time(
                figures, searcher, data.queries, data.truth, server, exact_queries,
                extra=with_wrk,
            )  # fmt: skip
        finally:
            for c in clients:
                c.close()
    return figures
