"""Latency and throughput bookkeeping shared by the baseline and the service runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Throughput:
    """Queries per second and per-call latency (ms) of one measured run."""

    qps: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, queries: int, elapsed: float, latencies: Sequence[float]) -> Throughput:
        lat = np.asarray(latencies) * 1000.0
        return cls(
            qps=queries / elapsed if elapsed > 0 else 0.0,
            p50_ms=float(np.percentile(lat, 50)) if len(lat) else 0.0,
            p99_ms=float(np.percentile(lat, 99)) if len(lat) else 0.0,
        )


def run_concurrent(
    workers: int,
    jobs: Sequence[object],
    make_runner: Callable[[int], Callable[[object], int]],
) -> Throughput:
    """Run ``jobs`` over ``workers`` threads (one runner each); count the queries answered.

    A runner takes one job (a query or a batch of them) and returns how many queries it
    answered; latency is per job.
    """
    slices = [list(jobs[w::workers]) for w in range(workers)]
    latencies: list[list[float]] = [[] for _ in range(workers)]
    answered = [0] * workers

    def work(w: int) -> None:
        runner = make_runner(w)
        for job in slices[w]:
            started = time.perf_counter()
            answered[w] += runner(job)
            latencies[w].append(time.perf_counter() - started)

    started = time.perf_counter()
    if workers == 1:
        work(0)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
    elapsed = time.perf_counter() - started
    return Throughput.of(sum(answered), elapsed, [x for lat in latencies for x in lat])
