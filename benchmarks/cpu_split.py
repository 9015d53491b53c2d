"""Where a query's CPU goes: client, coordinator and worker, per query, from /proc.

Starts ``vectorpanda up`` with one worker, loads an HNSW collection, waits for
the graph to settle (the worker idle), then runs single-vector queries through
the SDK at concurrency 1 and 16 and divides each process's CPU time (user +
system, from ``/proc/<pid>/stat`` and ``getrusage``) by the queries answered.
Raw FAISS in-process on the same data is the baseline, in the same run.

    .venv/bin/python -m benchmarks.cpu_split [--n 20000] [--dim 384] [--queries 3000]
        [--wire sdk json]

``sdk`` drives the SDK (binary queries), ``json`` plain JSON bodies over httpx, ``raw``
the same binary query bodies as the SDK written to a plain socket with the answer read
undecoded: the floor of any Python HTTP/1.1 client's CPU per query. ``floor`` is the
``raw`` client against ``benchmarks.hop_floor``'s bare relay instead of the server: the
same hops with the same libraries (HTTP in, a WebSocket message to a second process
and back), no work at all, so its columns are what the server's shape costs before
any of VectorPanda's own code or FAISS (the coordinator column is the relay, the worker
column the process that answers it). The client column
is this process's CPU (``getrusage``) over the run, so on a shared machine it is what
the client takes away from the server per query. The last two columns are the
coordinator's and the worker's read and write system calls per query
(``/proc/<pid>/io``): the reads and writes a batch of queries shares show there.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import httpx
import numpy as np
import orjson

from benchmarks.data import standard_normal
from benchmarks.hop_floor import running_floor
from benchmarks.timing import own_cpu, process_calls, process_cpu, wait_until_idle
from tests.stack import running_stack
from vectorpanda_client import Client
from vectorpanda_client.binary import ACCEPT, CONTENT_TYPE, encode_query
from workers.collection_spec import HNSW_DEFAULTS

OPT_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def raw_faiss_cpu_us(data: np.ndarray, queries: np.ndarray, ef: int) -> float:
    """Raw FAISS's CPU per query on a graph built as the server builds the collection's
    (its defaults: M and ef_construction), at ``ef``."""
    faiss.omp_set_num_threads(1)
    index = faiss.IndexHNSWFlat(data.shape[1], HNSW_DEFAULTS["m"])
    index.hnsw.efConstruction = HNSW_DEFAULTS["ef_construction"]
    index.add(data)
    index.hnsw.efSearch = ef
    started = own_cpu()
    for q in queries:
        index.search(q[None, :], 10)
    return (own_cpu() - started) / len(queries) * 1e6


def measure(
    url: str,
    key: str,
    queries: np.ndarray,
    concurrency: int,
    coordinator: int,
    worker: int,
    wire: str = "sdk",
    label: str | None = None,
) -> str:
    """One markdown row: q/s, p50 and CPU per query of each process at ``concurrency``.

    ``wire``: ``sdk`` (the SDK, binary queries), ``json`` (JSON bodies over httpx) or
    ``raw`` (binary bodies on a plain socket, the answer not decoded).
    """
    clients = [Client(url, key) for _ in range(concurrency)] if wire == "sdk" else []
    latencies: list[float] = []

    def work(w: int) -> None:
        if wire == "raw":
            latencies.extend(raw_queries(url, key, queries[w::concurrency]))
            return
        if wire == "json":
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            with httpx.Client(base_url=url, headers=headers) as http:
                for q in queries[w::concurrency]:
                    started = time.perf_counter()
                    body = orjson.dumps({"vector": q, "top_k": 10}, option=OPT_NUMPY)
                    http.post("/v1/collections/h/query", content=body).raise_for_status()
                    latencies.append(time.perf_counter() - started)
            return
        collection = clients[w].collection("h")
        for q in queries[w::concurrency]:
            started = time.perf_counter()
            collection.query(q, top_k=10)
            latencies.append(time.perf_counter() - started)

    c0, w0, m0 = process_cpu(coordinator), process_cpu(worker), own_cpu()
    calls0 = process_calls(coordinator), process_calls(worker)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(work, range(concurrency)))
    elapsed = time.perf_counter() - started
    calls1 = process_calls(coordinator), process_calls(worker)
    for c in clients:
        c.close()
    n = len(queries)
    cpu_us = [(own_cpu() - m0), process_cpu(coordinator) - c0, process_cpu(worker) - w0]
    cells = " | ".join(f"{x / n * 1e6:.0f}" for x in cpu_us)
    calls = " | ".join(
        f"{(after[0] - before[0]) / n:.2f} / {(after[1] - before[1]) / n:.2f}"
        for before, after in zip(calls0, calls1, strict=True)
    )
    p50 = statistics.median(latencies) * 1e3
    return (
        f"| {label or wire} | {concurrency} | {n / elapsed:.0f} | {p50:.2f} | {cells} | {calls} |"
    )


def raw_queries(url: str, key: str, queries: np.ndarray) -> list[float]:
    """Binary single-vector queries on one kept-alive socket; each answer's latency."""
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    head = (
        f"POST /v1/collections/h/query HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: {CONTENT_TYPE}\r\nAccept: {ACCEPT}\r\n"
    ).encode()
    latencies = []
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        for q in queries:
            started = time.perf_counter()
            body = encode_query(q[None, :], True, {"top_k": 10})
            sock.sendall(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            answer_head, _, buffer = buffer.partition(b"\r\n\r\n")
            if not answer_head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(answer_head.decode("latin-1"))
            length = next(
                int(line.split(b":", 1)[1])
                for line in answer_head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(buffer) < length:
                buffer += sock.recv(65536)
            buffer = buffer[length:]
            latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument(
        "--wire", nargs="+", choices=["sdk", "json", "raw", "floor"], default=["sdk", "raw", "json"]
    )
    args = parser.parse_args()
    data, queries = standard_normal(args.n, args.dim, args.queries)
    graph = f"HNSW m={HNSW_DEFAULTS['m']}, ef_construction {HNSW_DEFAULTS['ef_construction']}"
    print(f"raw FAISS ({graph}, ef 64): {raw_faiss_cpu_us(data, queries, 64):.0f} us CPU/query")
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), workers=1) as stack:
        assert stack.proc is not None
        coordinator = stack.proc.pid
        worker = stack.worker_pids()[0]
        key = stack.new_client("cpu", tier="premium")
        with Client(stack.url, key) as client:
            client.create_collection("h", args.dim, metric="l2", index="hnsw")
            client.collection("h").upsert([str(i) for i in range(args.n)], data)
        wait_until_idle([worker], budget_s=600)  # graph insertion has finished
        print(
            "| client | concurrency | q/s | p50 ms | client us | coordinator us | worker us "
            "| coordinator reads / writes | worker reads / writes |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for wire in args.wire:
            if wire == "floor":
                continue
            for concurrency in (1, 16):
                print(measure(stack.url, key, queries, concurrency, coordinator, worker, wire))
    if "floor" in args.wire:
        with running_floor() as (url, relay, echo):
            for concurrency in (1, 16):
                print(measure(url, "", queries, concurrency, relay, echo, "raw", "floor"))


if __name__ == "__main__":
    main()
