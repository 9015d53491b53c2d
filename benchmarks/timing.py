"""Latency and throughput bookkeeping shared by the baseline and the service runs."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def process_calls(pid: int) -> tuple[int, int]:
    """Read and write system calls a process has made (``syscr``, ``syscw`` of
    /proc/<pid>/io: read, write and their vector forms, which libuv uses on sockets;
    not send/recv)."""
    calls = dict(line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(calls["syscr"]), int(calls["syscw"])


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_until_idle(pids: Sequence[int], budget_s: float, window_s: float = 2.0) -> float:
    """Wait until the processes use under 5 % of a core over ``window_s`` (background
    work such as HNSW graph insertion has finished); return the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < budget_s:
        before = sum(process_cpu(pid) for pid in pids)
        time.sleep(window_s)
        if sum(process_cpu(pid) for pid in pids) - before < 0.05 * window_s:
            break
    return time.perf_counter() - started


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
