"""Graph build and memory of one HNSW collection, in-process, against raw FAISS.

    .venv/bin/python -m benchmarks.ingest_build --count 50000 --dim 384
    .venv/bin/python -m benchmarks.ingest_build --count 50000 --stack   # whole server
    .venv/bin/python -m benchmarks.ingest_build --count 50000 --grouped # arriving by cluster
    .venv/bin/python -m benchmarks.ingest_build --count 50000 --peers   # real embeddings

Upserts ``count`` clustered vectors (``--grouped``: arriving cluster by cluster;
``--peers``: the peers benchmark's real embeddings in corpus order, its dataset made
by ``benchmarks.peers.dataset``) (batches of 1,000, BUSY answers retried) into an
HNSW collection (M=16, ef_construction=100, as the peers benchmark) through the
worker's own store, waits until the graph holds them all, and prints wall and CPU
seconds, the FAISS thread count, 429-like BUSY answers, the RSS the collection
added, recall@10 of the graph at ef_search 32, 64 and 128, and raw FAISS's build of
the same vectors with every core for the ratio. The main thread is pinned to one
FAISS thread as the worker is. CPU seconds are the load-proof figure on a shared
machine.

``--stack`` does the same through a real server (``vectorpanda up``, two workers, the
SDK): the server's CPU until it is idle again, the coordinator's and the SDK's CPU
during the upload, and the RSS and PSS of its processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import faiss
import numpy as np

from benchmarks.data import gaussian_mixture, recall_at_k
from benchmarks.peers import dataset
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.heap import keep_large_blocks_mapped
from workers.maintenance import Maintenance
from workers.tenant_store import TenantStore

BATCH = 1000


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _busy_threads() -> int:
    """Threads of this process running or runnable right now."""
    running = 0
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/stat") as f:
            running += f.read().rsplit(")", 1)[1].split()[0] == "R"
    return running


def _recalls(found_at: Callable[[int], list[list[int]]], truth: np.ndarray) -> str:
    """Recall@10 at ef_search 32, 64 and 128, as ``a/b/c``."""
    return "/".join(f"{recall_at_k(found_at(ef), truth):.4f}" for ef in (32, 64, 128))


def _collection_build(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> None:
    faiss.omp_set_num_threads(1)  # as workers.main does for the request threads
    keep_large_blocks_mapped()  # as workers.main does
    with tempfile.TemporaryDirectory(prefix="vp-ingest-") as tmp:
        store = TenantStore.open(Path(tmp) / "hot", "bench", 1 << 40)
        spec = {"m": HNSW_M, "ef_construction": EF_CONSTRUCTION}
        store.create_collection(
            parse_collection_spec(
                {
                    "collection": "c",
                    "dimension": vectors.shape[1],
                    "metric": "l2",
                    "index": "hnsw",
                    "hnsw": spec,
                }
            )
        )
        coll = store.collection("c")
        rss0, cpu0, t0 = _rss_mib(), _cpu(), time.perf_counter()
        busy = 0
        for start in range(0, len(vectors), BATCH):
            chunk = vectors[start : start + BATCH]
            ids = [str(i) for i in range(start, start + len(chunk))]
            while True:
                try:
                    coll.upsert(ids, [None] * len(ids), chunk)
                    break
                except StoreError:
                    busy += 1
                    time.sleep(0.05)
        sent = time.perf_counter() - t0
        threads = 0
        while not Maintenance.shared().wait_idle(0.2):
            threads = max(threads, _busy_threads())
        wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
        index = coll.index
        assert index is not None and index.fresh_count == 0

        def found_at(ef: int) -> list[list[int]]:
            results, _ = coll.query(queries, 10, False, False, ef_search=ef)
            return [[int(i) for i in r["ids"]] for r in results]

        print(
            f"collection: upsert {sent:.1f} s, fully indexed {wall:.1f} s wall, "
            f"{cpu:.1f} s CPU, {len(vectors) / wall:,.0f} vectors/s, BUSY answers {busy}, "
            f"busiest {threads} threads on CPU at once, RSS +{_rss_mib() - rss0:.0f} MiB "
            f"(raw vectors {vectors.nbytes / 2**20:.0f} MiB), "
            f"recall@10 at ef 32/64/128 {_recalls(found_at, truth)}"
        )
        store.close()


def _faiss_build(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> None:
    cores = os.cpu_count() or 1
    faiss.omp_set_num_threads(cores)
    graph = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_M)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    t0, cpu0 = time.perf_counter(), _cpu()
    graph.add(vectors)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0

    def found_at(ef: int) -> list[list[int]]:
        graph.hnsw.efSearch = ef
        return cast(list[list[int]], graph.search(queries, 10)[1].tolist())

    print(
        f"raw FAISS, {cores} threads: {wall:.1f} s wall, {cpu:.1f} s CPU, "
        f"{len(vectors) / wall:,.0f} vectors/s, "
        f"recall@10 at ef 32/64/128 {_recalls(found_at, truth)}"
    )
    faiss.omp_set_num_threads(1)


def _stack_build(vectors: np.ndarray) -> None:
    from benchmarks.peers import procstat
    from benchmarks.peers.measure import settle
    from benchmarks.run import _premium_key
    from tests.stack import running_stack
    from vectorpanda_client import Client

    with (
        tempfile.TemporaryDirectory(prefix="vp-ingest-") as tmp,
        running_stack(Path(tmp), workers=2) as stack,
    ):
        assert stack.proc is not None
        server = [stack.proc.pid]
        with Client(stack.url, _premium_key(stack)) as client:
            settle(server, budget_s=60)
            idle_rss, idle_pss = _tree_rss_mib(server[0]), procstat.pss_mib(server)
            spec = {"m": HNSW_M, "ef_construction": EF_CONSTRUCTION}
            client.create_collection("c", vectors.shape[1], metric="l2", index="hnsw", hnsw=spec)
            cpu, t0 = procstat.cpu_seconds(server), time.perf_counter()
            coordinator, client_cpu = procstat.cpu_seconds_of(server[0]), _cpu()
            client.collection("c").upsert([str(i) for i in range(len(vectors))], vectors)
            sent = time.perf_counter() - t0
            coordinator = procstat.cpu_seconds_of(server[0]) - coordinator
            print(
                f"stack: during the upsert, the coordinator used {coordinator:.2f} s of CPU, "
                f"the SDK {_cpu() - client_cpu:.2f} s"
            )
            waited = settle(server, budget_s=1800)
            print(
                f"stack: upsert {sent:.1f} s, fully indexed {sent + waited:.1f} s wall "
                f"(0.5 s resolution), server CPU {procstat.cpu_seconds(server) - cpu:.1f} s; "
                f"RSS {_tree_rss_mib(server[0]):.0f} MiB (idle {idle_rss:.0f}), "
                f"PSS {procstat.pss_mib(server):.0f} MiB (idle {idle_pss:.0f}), "
                f"raw vectors {vectors.nbytes / 2**20:.0f} MiB"
            )
            for pid in procstat.tree(server[0]):
                with contextlib.suppress(OSError):
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    name = b" ".join(cmd[2:4]).decode(errors="replace")
                    print(f"  {pid} {name}: RSS {_tree_rss_mib_one(pid):.0f} MiB")


def _tree_rss_mib_one(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return 0.0


def _tree_rss_mib(root: int) -> float:
    from benchmarks.peers import procstat

    return sum(_tree_rss_mib_one(pid) for pid in procstat.tree(root))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--stack", action="store_true", help="through a real server")
    parser.add_argument(
        "--grouped", action="store_true", help="the vectors arrive cluster by cluster"
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="the peers benchmark's real embeddings, in corpus order (384-d; --dim unused)",
    )
    args = parser.parse_args()
    if args.peers:
        data, label = dataset.real(args.count, 1000)
        print(label)
    else:
        data = gaussian_mixture(args.count, args.dim, 200, grouped=args.grouped)
    if args.stack:
        _stack_build(data.vectors)
        return
    _collection_build(data.vectors, data.queries, data.truth)
    if not args.skip_faiss:
        _faiss_build(data.vectors, data.queries, data.truth)


if __name__ == "__main__":
    main()
