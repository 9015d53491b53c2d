"""Stall figures: a worker frozen by SIGSTOP under ``vectorpanda up``, fenced, its tenants served.

Starts ``vectorpanda up`` with 2 workers and 6 tenants, each with a thread
alternating upserts and queries. Each of ``--runs`` times it SIGSTOPs the
worker owning the most tenants, notes when the supervisor has killed it (the
fence) and, per tenant of that worker, when a request sent after the stop first
succeeded. Reports stop-to-served and fence-to-served per tenant (median,
max), the answers' statuses and acknowledged writes lost (must be 0).

    .venv/bin/python -m benchmarks.stall_fence [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from tests.integration.test_stall_fencing import (
    DIM,
    TenantLoad,
    new_tenant,
    process_gone,
    workers_view,
)
from tests.stack import Stack, running_stack

TENANTS = 6


def stall_once(stack: Stack, loads: dict[str, TenantLoad]) -> list[tuple[float, float]]:
    """One stall: per tenant of the victim, (stop -> served, fence -> served) in seconds."""
    live = [w for w in workers_view(stack) if w["state"] == "live"]
    victim = max(live, key=lambda w: int(w["tenants"]))  # type: ignore[call-overload]
    pid, tenants = int(victim["pid"]), list(victim["tenant_ids"])  # type: ignore[call-overload]
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    while not process_gone(pid):
        if time.monotonic() - stopped > 30:
            os.kill(pid, signal.SIGCONT)
            raise RuntimeError(f"worker pid {pid} was not fenced within 30 s")
        time.sleep(0.002)
    fenced = time.monotonic()
    figures = []
    for tenant in tenants:
        while loads[tenant].served_again_after(stopped) is None:
            if time.monotonic() - stopped > 60:
                raise RuntimeError(f"tenant {tenant} not served 60 s after the stop")
            time.sleep(0.01)
        served = loads[tenant].served_again_after(stopped)
        assert served is not None
        figures.append((served, served - (fenced - stopped)))
    deadline = time.monotonic() + 30
    while sum(w["state"] == "live" for w in workers_view(stack)) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the fenced worker was not replaced")
        time.sleep(0.1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    figures: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp) / "data") as stack:
        tenants = [new_tenant(stack, f"bench{i}") for i in range(TENANTS)]
        loads = {}
        for i, (cid, key) in enumerate(tenants):
            with stack.client(key) as c:
                c.post("/v1/collections", json={"name": "c", "dimension": DIM})
            loads[cid] = TenantLoad(stack, key, f"t{i}", i)
        for load in loads.values():
            load.start()
        try:
            for run in range(args.runs):
                time.sleep(2.0)  # let every tenant be assigned and busy again
                got = stall_once(stack, loads)
                figures += got
                print(f"run {run + 1}: {len(got)} tenants, fence -> served (s): "
                      + ", ".join(f"{f:.3f}" for _, f in got), flush=True)  # fmt: skip
        finally:
            for load in loads.values():
                load.stop_flag.set()
            for load in loads.values():
                load.join(30)
        lost = 0
        for (_cid, key), load in zip(tenants, loads.values(), strict=True):
            with stack.client(key) as c:
                ids = list(load.acked)
                for i in range(0, len(ids), 1000):
                    r = c.post("/v1/collections/c/fetch", json={"ids": ids[i : i + 1000]})
                    got_vectors = r.json()["vectors"]
                    for vid in ids[i : i + 1000]:
                        row = got_vectors.get(vid)
                        values = None if row is None else np.asarray(row["values"], np.float32)
                        if values is None or not np.array_equal(values, load.acked[vid]):
                            lost += 1
    statuses: Counter[int] = Counter(s for load in loads.values() for _, _, s in load.answers)
    stop_to_served = [s for s, _ in figures]
    fence_to_served = [f for _, f in figures]
    print(f"stalls: {args.runs}, tenant recoveries measured: {len(figures)}")
    print(
        f"SIGSTOP -> served per tenant: median {statistics.median(stop_to_served):.3f} s, "
        f"max {max(stop_to_served):.3f} s"
    )
    print(
        f"fence -> served per tenant: median {statistics.median(fence_to_served) * 1000:.0f} ms, "
        f"max {max(fence_to_served) * 1000:.0f} ms"
    )
    print(f"answers by status: {dict(sorted(statuses.items()))}")
    print(f"acknowledged writes: {sum(len(x.acked) for x in loads.values())}, lost: {lost}")


if __name__ == "__main__":
    main()
