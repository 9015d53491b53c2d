"""Floods: the cost of a refused request, and what steady clients see during a flood.

    .venv/bin/python -m benchmarks.flood                  # through `vectorpanda up`
    .venv/bin/python -m benchmarks.flood --seconds 20
    .venv/bin/python -m benchmarks.flood --processes 2   # VP_COORDINATOR_PROCESSES=2

1. Cost of a "no": the coordinator process's CPU time (from /proc) divided by
   the requests ``wrk`` completed, for floods that are refused for the rate
   (a free-tier key) and for an unknown key, with the refusal delay off so
   every request is one the coordinator answers as fast as it can.
2. Steady clients beside a 64-connection free-tier flood (refusal delay at its
   default): their p50/p99 alone and during the flood, in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tests.flood import flood_requests, prepare_collection, run_steady, start_flood
from tests.stack import Stack, running_stack

P99_FLOOR_S = 0.015  # tests/integration/test_flood.py: quiet p99s below it count as it

CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def refusal_cost(seconds: int, processes: int) -> list[str]:
    lines = []
    env = {"VP_REFUSAL_DELAY_S": "0", "VP_COORDINATOR_PROCESSES": str(processes)}
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack(Path(tmp) / "vp", workers=1, **env) as stack,
    ):
        assert stack.proc is not None
        free_key = stack.new_client("flooder", tier="free")
        prepare_collection(stack.client(free_key))
        for label, key in (
            ("rate-limited key", free_key),
            ("unknown key", "vp_0123456789abcdef_" + "x" * 43),
        ):
            before = coordinator_cpu(stack)
            flood = start_flood(stack.url, key, seconds, workdir=Path(tmp))
            out, _ = flood.communicate(timeout=seconds + 60)
            used = coordinator_cpu(stack) - before
            n = flood_requests(out)
            lines.append(
                f"| {label} | {n} | {n / seconds:,.0f} | {used:.2f} | {used / n * 1e6:.0f} |"
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
    p.add_argument(
        "--refusal-delay",
        default=None,
        help="VP_REFUSAL_DELAY_S for the steady part (0: every refusal answered at once, "
        "so the flood costs the coordinator the most)",
    )
    args = p.parse_args()
    print(f"coordinator processes: {args.processes}\n")
    if not args.steady_only:
        print("## Cost of a refused request (coordinator CPU, refusal delay off)\n")
        print("| flood | requests | requests/s | coordinator CPU s | CPU µs per request |")
        print("|---|---|---|---|---|")
        print("\n".join(refusal_cost(args.seconds, args.processes)))
    print("\n## Steady clients beside a 64-connection free-tier flood\n")
    print(
        "| client | p50 alone ms | p99 alone ms | p50 flood ms | p99 flood ms | errors "
        "| p99 within 2x | within 2x, 15 ms floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(steady_beside_flood(args.seconds, args.processes, args.refusal_delay)))


if __name__ == "__main__":
    main()
