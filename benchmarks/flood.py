"""Floods: the cost of a refused request, and what steady clients see during a flood.

    .venv/bin/python -m benchmarks.flood                  # through `vectorpanda up`
    .venv/bin/python -m benchmarks.flood --seconds 20
    .venv/bin/python -m benchmarks.flood --processes 2   # VP_COORDINATOR_PROCESSES=2

1. Cost of a "no": the coordinator processes' CPU time (from /proc) divided by
   the requests ``wrk`` completed, for floods refused for the rate (a free-tier
   key), an unknown key, no credential, a paused client and an oversize body
   (Content-Length over VP_MAX_BODY_BYTES), with the refusal delay off so every
   request is one the coordinator answers as fast as it can. Beside each, the
   floor: the same flood against uvicorn built as the coordinator builds it
   (``benchmarks/refusal_floor.py``: a bare ASGI app answering a precomputed
   429), in the same run, so "ours - floor" is what our refusal itself costs.
   "Less idle" takes off what the coordinator processes use with no request at
   all (their periodic duties, measured for 4 s before each flood), which the
   plain figure spreads over the flood's requests.
2. Steady clients beside a 64-connection free-tier flood (refusal delay at its
   default): their p50/p99 alone and during the flood, in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.flood import flood_requests, prepare_collection, run_steady, start_flood
from tests.stack import Stack, free_port, running_stack

P99_FLOOR_S = 0.015  # tests/integration/test_flood.py: quiet p99s below it count as it

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Small enough that an oversize flood's body is a few pages, large enough for the setup.
MAX_BODY_BYTES = 16 * 1024
UNKNOWN_KEY = "vp_0123456789abcdef_" + "x" * 43


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def coordinator_cpu(stack: Stack) -> float:
    """CPU seconds of the coordinator: the `up` process and its coordinator processes."""
    assert stack.proc is not None
    total = cpu_seconds(stack.proc.pid)
    for pid in stack.coordinator_pids():
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    total = cpu_seconds(pid)
    for child in out.stdout.split():
        try:
            total += cpu_seconds(int(child))
        except OSError:
            continue
    return total


@contextmanager
def floor_server(processes: int) -> Iterator[tuple[str, Callable[[], float]]]:
    """benchmarks/refusal_floor.py on a free port: its URL and a CPU-seconds reading."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.refusal_floor", "--port", str(port),
         "--processes", str(processes)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no floor server"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", lambda: tree_cpu(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def idle_cpu(cpu: Callable[[], float], seconds: float = 4.0) -> float:
    """CPU seconds a second the server uses with no request (its periodic duties)."""
    before = cpu()
    time.sleep(seconds)
    return (cpu() - before) / seconds


def flood_cost(
    url: str, cpu: Callable[[], float], key: str | None, seconds: int, body: int, tmp: Path
) -> tuple[int, float, float]:
    """Requests wrk completed, and CPU µs per request of the server measured by ``cpu``:
    all of it, and less what the server uses idle in as long (measured just before)."""
    idle = idle_cpu(cpu)
    before, started = cpu(), time.monotonic()
    flood = start_flood(url, key, seconds, workdir=tmp, body_bytes=body)
    out, _ = flood.communicate(timeout=seconds + 60)
    used, took = cpu() - before, time.monotonic() - started
    n = flood_requests(out)
    return n, used / n * 1e6, (used - idle * took) / n * 1e6


def paused_client(stack: Stack) -> str:
    """An API key of a client that is paused."""
    with stack.admin() as admin:
        body = {"name": "paused", "email": "paused@example.com", "tier": "standard"}
        client_id = admin.post("/admin/v1/clients", json=body).json()["client_id"]
        key = admin.post(f"/admin/v1/clients/{client_id}/keys", json={"scopes": ["read"]})
        r = admin.post(f"/admin/v1/clients/{client_id}/pause", json={"reason": "benchmark"})
        r.raise_for_status()
        return str(key.json()["api_key"])


def refusal_cost(seconds: int, processes: int) -> list[str]:
    lines = []
    env = {
        "VP_REFUSAL_DELAY_S": "0",
        "VP_COORDINATOR_PROCESSES": str(processes),
        "VP_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack(Path(tmp) / "vp", workers=1, **env) as stack,
        floor_server(processes) as (floor_url, floor_cpu),
    ):
        free_key = stack.new_client("flooder", tier="free")
        prepare_collection(stack.client(free_key))
        floods: list[tuple[str, str | None, int]] = [
            ("rate-limited key", free_key, 0),
            ("unknown key", UNKNOWN_KEY, 0),
            ("no credential", None, 0),
            ("paused client", paused_client(stack), 0),
            ("oversize body", free_key, MAX_BODY_BYTES + 1024),
        ]
        for label, key, body in floods:
            # The floor and ours back to back: the same machine load for both.
            _, floor, _ = flood_cost(floor_url, floor_cpu, key, seconds, body, Path(tmp))
            n, ours, busy = flood_cost(
                stack.url, lambda: coordinator_cpu(stack), key, seconds, body, Path(tmp)
            )
            lines.append(
                f"| {label} | {floor:.0f} | {ours:.0f} | {busy:.0f} | {busy - floor:.0f} "
                f"| {n / seconds:,.0f} |"
            )
    return lines


def steady_beside_flood(seconds: int, processes: int, refusal_delay: str | None) -> list[str]:
    lines = []
    env = {"VP_COORDINATOR_PROCESSES": str(processes)}
    if refusal_delay is not None:
        env["VP_REFUSAL_DELAY_S"] = refusal_delay
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp) / "vp", **env) as stack:
        steady = {}
        for tier in ("standard", "premium"):
            steady[tier] = stack.client(stack.new_client(f"steady-{tier}", tier=tier))
            prepare_collection(steady[tier])
        free_key = stack.new_client("flooder", tier="free")
        prepare_collection(stack.client(free_key))
        run_steady(steady, 2)
        alone = run_steady(steady, seconds)
        flood = start_flood(stack.url, free_key, seconds + 2, workdir=Path(tmp))
        during = run_steady(steady, seconds)
        out, _ = flood.communicate(timeout=seconds + 60)
        for a, d in zip(alone, during, strict=True):
            a.latencies.sort()
            d.latencies.sort()
            raw = d.p99() <= 2 * a.p99()
            floored = d.p99() <= 2 * max(a.p99(), P99_FLOOR_S)
            lines.append(
                f"| {a.name} | {a.latencies[len(a.latencies) // 2] * 1e3:.2f} | "
                f"{a.p99() * 1e3:.2f} | {d.latencies[len(d.latencies) // 2] * 1e3:.2f} | "
                f"{d.p99() * 1e3:.2f} | {len(d.errors)} | {'yes' if raw else 'no'} | "
                f"{'yes' if floored else 'no'} |"
            )
        lines.append(f"\nflood: {flood_requests(out)} requests in {seconds + 2} s")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=20, help="length of each flood")
    p.add_argument("--processes", type=int, default=1, help="VP_COORDINATOR_PROCESSES")
    p.add_argument("--steady-only", action="store_true", help="skip the refusal cost")
    p.add_argument("--refusal-only", action="store_true", help="skip the steady clients")
    p.add_argument(
        "--refusal-delay",
        default=None,
        help="VP_REFUSAL_DELAY_S for the steady part (0: every refusal answered at once, "
        "so the flood costs the coordinator the most)",
    )
    args = p.parse_args()
    print(f"coordinator processes: {args.processes}\n")
    if not args.steady_only:
        print("## Cost of a refused request (server CPU µs per request, refusal delay off)\n")
        print(
            "| flood | floor µs | ours µs | ours less idle µs | ours less idle - floor µs "
            "| ours requests/s |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(refusal_cost(args.seconds, args.processes)))
    if args.refusal_only:
        return
    print("\n## Steady clients beside a 64-connection free-tier flood\n")
    print(
        "| client | p50 alone ms | p99 alone ms | p50 flood ms | p99 flood ms | errors "
        "| p99 within 2x | within 2x, 15 ms floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(steady_beside_flood(args.seconds, args.processes, args.refusal_delay)))


if __name__ == "__main__":
    main()
