"""Small throughput check: upserts/s and queries/s over HTTP for 10k x 384 vectors.

Runs a real ``vectorpanda up`` in a temporary directory and compares with raw
FAISS in-process (same data, same metric) measured in the same run.

    .venv/bin/python -m benchmarks.throughput [--n 10000] [--dim 384]
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import httpx
import numpy as np

from benchmarks.data import standard_normal
from tests.stack import running_stack


def raw_faiss(data: np.ndarray, queries: np.ndarray, k: int) -> float:
    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatL2(data.shape[1])
    index.add(data)
    started = time.perf_counter()
    for q in queries:
        index.search(q[None, :], k)
    return len(queries) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    data, queries = standard_normal(args.n, args.dim, args.queries)
    baseline_qps = raw_faiss(data, queries, 10)
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        key = stack.new_client("bench", tier="premium")
        with stack.client(key) as c:
            c.post("/v1/collections", json={"name": "b", "dimension": args.dim, "metric": "l2"})
            started = time.perf_counter()
            for i in range(0, args.n, 1000):
                chunk = data[i : i + 1000]
                body = {
                    "ids": [str(j) for j in range(i, i + len(chunk))],
                    "values_b64": base64.b64encode(chunk.tobytes()).decode(),
                }
                c.post("/v1/collections/b/upsert", json=body).raise_for_status()
            upserts = args.n / (time.perf_counter() - started)
        results = {}
        for concurrency in (1, 8):
            clients = [stack.client(key) for _ in range(concurrency)]

            def run(
                slot: int, clients: list[httpx.Client] = clients, conc: int = concurrency
            ) -> None:
                for q in queries[slot::conc]:
                    r = clients[slot].post(
                        "/v1/collections/b/query", json={"vector": q.tolist(), "top_k": 10}
                    )
                    r.raise_for_status()

            started = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(run, range(concurrency)))
            results[concurrency] = args.queries / (time.perf_counter() - started)
            for cl in clients:
                cl.close()
    print(f"data: {args.n} x {args.dim} float32, flat l2, top_k=10")
    print(f"upserts/s over HTTP (values_b64, batches of 1000, fsynced): {upserts:,.0f}")
    print(f"raw FAISS in-process queries/s (1 thread, baseline): {baseline_qps:,.0f}")
    for conc, qps in results.items():
        ratio = qps / baseline_qps
        print(f"queries/s over HTTP at concurrency {conc}: {qps:,.0f} ({ratio:.2f}x baseline)")


if __name__ == "__main__":
    main()
