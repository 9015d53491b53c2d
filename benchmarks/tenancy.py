"""Multi-tenancy on one worker: memory per idle tenant, cold-load latency, and the p99
of a hot tenant while the others churn."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import Throughput
from tests.stack import Stack, running_stack
from vectorpanda_client import Client


def worker_rss_mb(stack: Stack) -> float:
    """Resident memory of the worker processes, in MiB."""
    total_kb = 0
    for pid in stack.worker_pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def _new_tenant(stack: Stack, i: int, dim: int, per_tenant: int) -> str:
    # Premium: a free tenant's 25 requests/s limit would show up as 1 s retries, not latency.
    key = stack.new_client(f"tenant{i}", tier="premium")
    vectors = np.random.default_rng(i).standard_normal((per_tenant, dim), dtype=np.float32)
    with Client(stack.url, key) as client:
        client.create_collection("c", dim, metric="l2")
        client.collection("c").upsert([str(j) for j in range(per_tenant)], vectors)
    return key


def _timed_query(client: Client, q: np.ndarray) -> float:
    started = time.perf_counter()
    client.collection("c").query(q, top_k=10)
    return time.perf_counter() - started


def _hot_latencies(url: str, key: str, q: np.ndarray, seconds: float) -> list[float]:
    out: list[float] = []
    with Client(url, key) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            out.append(_timed_query(client, q))
    return out


def _churn(url: str, keys: list[str], dim: int, stop: threading.Event, seed: int) -> int:
    rng = random.Random(seed)
    done = 0
    while not stop.is_set():
        with Client(url, rng.choice(keys)) as client:
            vector = np.random.default_rng(done).standard_normal(dim, dtype=np.float32)
            client.collection("c").query(vector, top_k=10)
            client.collection("c").upsert([f"churn{done}"], vector[None, :])
        done += 1
    return done


def run_tenancy(
    data_dir: Path, tenants: int, per_tenant: int, dim: int, seconds: float, env: dict[str, str]
) -> dict[str, Any]:
    """Fill one worker with ``tenants`` tenants, then measure idle memory, cold loads, churn."""
    out: dict[str, Any] = {"tenants": tenants, "vectors_per_tenant": per_tenant, "dim": dim}
    with running_stack(data_dir, workers=1, **env) as stack:
        before = worker_rss_mb(stack)
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            keys = list(pool.map(lambda i: _new_tenant(stack, i, dim, per_tenant), range(tenants)))
        out["setup_s"] = time.perf_counter() - started
        time.sleep(2.0)
        after = worker_rss_mb(stack)
        out["worker_rss_mb_before"] = before
        out["worker_rss_mb_after"] = after
        out["kib_per_idle_tenant"] = (after - before) * 1024 / tenants
    # A restart leaves every tenant cold: its first request loads it from disk.
    with running_stack(data_dir, workers=1, **env) as stack:
        sample = random.Random(1).sample(keys, min(200, len(keys)))
        q = np.zeros(dim, dtype=np.float32)
        cold, warm = [], []
        for key in sample:
            with Client(stack.url, key) as client:
                cold.append(_timed_query(client, q))
                warm.append(_timed_query(client, q))
        out["cold_load"] = Throughput.of(len(cold), sum(cold), cold)
        out["warm_query"] = Throughput.of(len(warm), sum(warm), warm)
        hot = keys[0]
        quiet = _hot_latencies(stack.url, hot, q, seconds)
        out["hot_quiet"] = Throughput.of(len(quiet), seconds, quiet)
        stop = threading.Event()
        others = keys[1:] or keys
        with ThreadPoolExecutor(4) as pool:
            churners = [pool.submit(_churn, stack.url, others, dim, stop, s) for s in range(4)]
            busy = _hot_latencies(stack.url, hot, q, seconds)
            stop.set()
            out["churn_requests"] = sum(f.result() for f in churners)
        out["hot_under_churn"] = Throughput.of(len(busy), seconds, busy)
    return out
