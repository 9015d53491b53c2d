"""Audit at scale: verify, replay and incremental verify of a generated log, and admin actions/s.

    .venv/bin/python -m benchmarks.audit_scale                    # 1,000,000 events (minutes)
    .venv/bin/python -m benchmarks.audit_scale --events 100000 --admin-seconds 5

The log is built through the store (tests/event_log_fixture.py); the tools
are timed as an operator runs them (``vectorpanda audit ...`` in a child
process, peak RSS from that child's own rusage). Admin actions/s: 32
concurrent clients changing tiers and recording billing through the HTTP API
of a real ``vectorpanda up`` (control database with synchronous=FULL).
Run by ``make bench`` too (BENCH_AUDIT_EVENTS=0 skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.history_scale import time_history
from eventlog.records import MAX_READ_LIMIT
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditProjection
from tests.event_log_fixture import build_log, build_log_at
from tests.stack import running_stack

ANCHOR_SECRET = "benchmark-anchor-secret"


def timed_cli(data: Path, *args: str) -> dict[str, Any]:
    """Run ``vectorpanda audit <args>``; its wall time, peak RSS and JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VP_")}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "vectorpanda", "audit", *args, "--data-dir", str(data)],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
        )
        assert child.stdout is not None
        out = child.stdout.read()
        # wait4, not wait: the rusage of this one child is its own peak RSS.
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        if child.returncode not in (0, 1):
            raise RuntimeError(f"audit {args} failed: {err.read().decode()[-2000:]}")
    peak_kib = usage.ru_maxrss
    # CPU next to wall time: on a shared machine the wall clock mostly measures the others.
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "out": out,
    }


def project(store: SqliteEventStore, audit_db: Path) -> None:
    """Catch the live audit tables up the way the projector does."""
    projection = AuditProjection.at(audit_db)
    cp = projection.checkpoint()
    while page := store.read(after_seq=cp, limit=MAX_READ_LIMIT):
        cp = projection.apply(page)
    projection.close()


def run_audit_scale(events: int, tmp: Path) -> dict[str, Any]:
    """Build, replay, verify in full, then verify the last 10,000 events incrementally."""
    data = tmp / "audit-data"
    data.mkdir()
    env_file = data / "vectorpanda.env"
    env_file.write_text(f"VP_ANCHOR_SIGNING_KEY={ANCHOR_SECRET}\n")
    env_file.chmod(0o600)
    started = time.perf_counter()
    store = build_log_at(data / "control.sqlite3", events)
    built = time.perf_counter() - started
    print(f"audit: built {events:,} events in {built:.1f}s", flush=True)
    history = time_history(data, store)
    median = history["fold_random"]["median_ms"]
    print(f"audit: state as of a moment, median {median} ms", flush=True)
    # The live tables are the replay's output (the same fold; tests check they are equal).
    replay = timed_cli(data, "replay", "--into", str(data / "audit.sqlite3"))
    print(f"audit: replay {replay['seconds']}s, peak {replay['peak_rss_mb']} MB", flush=True)
    full = timed_cli(data, "verify", "--json", "--record-checkpoint")
    verdict = json.loads(full["out"])
    print(f"audit: full verify {full['seconds']}s, peak {full['peak_rss_mb']} MB", flush=True)
    build_log(store, 10_000, seed=21, prefix="d")
    project(store, data / "audit.sqlite3")
    since = timed_cli(data, "verify", "--json", "--since-checkpoint")
    incremental = json.loads(since["out"])
    print(f"audit: incremental {since['seconds']}s, peak {since['peak_rss_mb']} MB", flush=True)
    return {
        "events": events,
        "build_seconds": round(built, 1),
        "history": history,
        "replay": {k: v for k, v in replay.items() if k != "out"},
        "full_verify": {k: v for k, v in full.items() if k != "out"}
        | {"ok": verdict["ok"], "verify_seconds": verdict["seconds"]},
        "incremental_verify": {k: v for k, v in since.items() if k != "out"}
        | {
            "ok": incremental["ok"],
            "events": incremental["events"],
            "verify_seconds": incremental["seconds"],
        },
    }


async def _make_clients(http: httpx.AsyncClient, count: int) -> list[str]:
    ids = []
    for i in range(count):
        body = {"name": f"bench {i}", "email": f"b{i}@example.com", "tier": "free"}
        made = await http.post("/admin/v1/clients", json=body)
        ids.append(made.raise_for_status().json()["client_id"])
    return ids


async def _admin_load(url: str, token: str, concurrency: int, seconds: float) -> float:
    """The Python client (httpx): costs milliseconds of this machine's CPU per request."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        ids = await _make_clients(http, concurrency)
        done = 0
        deadline = time.perf_counter() + seconds

        async def actor(cid: str) -> None:
            nonlocal done
            tiers = ("standard", "premium", "free")
            n = 0
            while time.perf_counter() < deadline:
                if n % 2:
                    body = {
                        "kind": "invoice_issued",
                        "amount_cents": 100 + n,
                        "currency": "EUR",
                        "reference": f"B-{n}",
                        "reason": "benchmark",
                    }
                    r = await http.post(f"/admin/v1/clients/{cid}/billing", json=body)
                else:
                    tier = {"tier": tiers[(n // 2) % 3], "reason": "benchmark"}
                    r = await http.post(f"/admin/v1/clients/{cid}/tier", json=tier)
                r.raise_for_status()
                n += 1
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(actor(cid) for cid in ids))
        return done / (time.perf_counter() - started)


_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_DONE = re.compile(r"actions: (\d+) non-2xx: (\d+) billed: (\d+)")


@dataclass(frozen=True)
class WrkRun:
    """What wrk reported, and what it cost: its own CPU seconds (all its threads)."""

    rate: float
    billed: int  # billing records acknowledged (201)
    cpu_seconds: float


def _wrk_load(url: str, token: str, concurrency: int, seconds: float, ids: list[str]) -> WrkRun:
    """wrk (C, a fraction of a core) with benchmarks/admin_actions.lua; the token via env."""
    script = Path(__file__).with_name("admin_actions.lua")
    threads = "2" if concurrency >= 2 else "1"
    command = ["wrk", "-t", threads, "-c", str(concurrency), "-d", f"{seconds:g}s"]
    # Children's rusage grows only by the children reaped meanwhile: wrk alone here.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [*command, "-s", str(script), url, "--", *ids],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "VP_BENCH_TOKEN": token},
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rate, done = _WRK_RATE.search(out), _WRK_DONE.search(out)
    if rate is None or done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    if int(done.group(2)):
        raise RuntimeError(f"{done.group(2)} of {done.group(1)} admin actions failed:\n{out}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkRun(float(rate.group(1)), int(done.group(3)), cpu)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class AdminThroughput:
    """Admin actions/s, and the coordinator process's CPU per action while they ran.

    On a shared machine the rate says how much CPU the others left; the CPU per
    action is what one coordinator process spends (HTTP, the write, and the relay,
    projector and notifier that follow each event in the same process).
    """

    actions_per_s: float
    client: str
    cpu_us_per_action: float
    coordinator_cpu_share: float  # of one core, over the run
    load_cpu_share: float | None = None  # wrk's own CPU, of one core (None: not measured)
    billing_acked: int | None = None  # billing records wrk saw acknowledged (201)
    billing_events: int | None = None  # billing events in the log afterwards


def measure_admin_throughput(
    tmp: Path, concurrency: int = 32, seconds: float = 10.0, client: str = "auto"
) -> AdminThroughput:
    """Admin actions per second through the HTTP API (each one event plus write-model rows).

    ``client`` is ``wrk`` (used by ``auto`` when installed) or ``httpx``; the Python
    client shares this machine's cores with the server, so it measures itself too.
    """
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    run: WrkRun | None = None
    with running_stack(tmp / "admin", workers=1) as stack:
        assert stack.proc is not None
        pid = stack.proc.pid
        if client == "wrk":

            async def clients() -> list[str]:
                headers = {"Authorization": f"Bearer {stack.admin_token}"}
                async with httpx.AsyncClient(
                    base_url=stack.url, headers=headers, timeout=60
                ) as http:
                    return await _make_clients(http, concurrency)

            ids = asyncio.run(clients())
            cpu, started = process_cpu_seconds(pid), time.perf_counter()
            run = _wrk_load(stack.url, stack.admin_token, concurrency, seconds, ids)
            rate = run.rate
        else:
            cpu, started = process_cpu_seconds(pid), time.perf_counter()
            rate = asyncio.run(_admin_load(stack.url, stack.admin_token, concurrency, seconds))
        used, wall = process_cpu_seconds(pid) - cpu, time.perf_counter() - started
    actions = rate * wall
    billing_events = _check_log(tmp / "admin", run)
    return AdminThroughput(
        actions_per_s=rate,
        client=client,
        cpu_us_per_action=1e6 * used / actions if actions else 0.0,
        coordinator_cpu_share=used / wall,
        load_cpu_share=run.cpu_seconds / wall if run else None,
        billing_acked=run.billed if run else None,
        billing_events=billing_events,
    )


def _check_log(data: Path, run: WrkRun | None) -> int:
    """The billing events in the stopped stack's log, once its chain verifies and (with
    wrk's count) every acknowledged billing record's event is there."""
    verdict = json.loads(timed_cli(data, "verify", "--json")["out"])
    if not verdict["ok"]:
        raise RuntimeError(f"the chain does not verify after the admin load: {verdict}")
    with closing(sqlite3.connect(f"file:{data / 'control.sqlite3'}?mode=ro", uri=True)) as db:
        [(billed,)] = db.execute("SELECT count(*) FROM events WHERE type LIKE 'billing.%'")
    if run is not None and billed < run.billed:
        raise RuntimeError(f"{run.billed} billing records acknowledged, {billed} in the log")
    return int(billed)


def run_admin_throughput(
    tmp: Path, concurrency: int = 32, seconds: float = 10.0, client: str = "auto"
) -> tuple[float, str]:
    """``measure_admin_throughput``'s rate and load generator."""
    measured = measure_admin_throughput(tmp, concurrency, seconds, client)
    return measured.actions_per_s, measured.client


def admin_results(measured: AdminThroughput) -> dict[str, Any]:
    """The figures ``audit_markdown`` reports, for the results JSON."""
    return {
        "admin_actions_per_s": round(measured.actions_per_s),
        "admin_client": measured.client,
        "admin_cpu_us_per_action": round(measured.cpu_us_per_action),
        "admin_cpu_share": round(measured.coordinator_cpu_share, 2),
        "admin_load_cpu_share": None
        if measured.load_cpu_share is None
        else round(measured.load_cpu_share, 2),
        "admin_billing_acked": measured.billing_acked,
        "admin_billing_events": measured.billing_events,
    }


def audit_markdown(audit: dict[str, Any] | None) -> str:
    """The audit section of the bench report (empty when it was skipped)."""
    if not audit:
        return ""
    rows = [
        ("replay (`audit replay --into`)", audit["replay"]),
        ("full verify (`audit verify`)", audit["full_verify"]),
        ("incremental verify, last 10,000 (`--since-checkpoint`)", audit["incremental_verify"]),
    ]
    lines = [
        "",
        f"## Audit at scale: {audit['events']:,} generated events",
        "",
        "| step | seconds (whole command) | CPU seconds | of which the check | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['seconds']} | {r['cpu_seconds']} | {r.get('verify_seconds', '')} "
            f"| {r['peak_rss_mb']} |"
            for name, r in rows
        ),
        "",
        f"Log built through the store in {audit['build_seconds']} s.",
    ]
    if "history" in audit:
        h = audit["history"]
        lines.append(
            f"A client as of a moment (`audit state`): {h['fold_random']['median_ms']} ms "
            f"median, {h['fold_random']['p95_ms']} ms p95 in process over "
            f"{h['fold_random']['samples']} random clients and moments; the whole command "
            f"{h['cli_audit_state_seconds'][0]} s (interpreter start-up included)."
        )
    if "admin_actions_per_s" in audit:
        cpu = audit.get("admin_cpu_us_per_action")
        lines.append(
            f"Admin actions/s, 32 concurrent clients over HTTP: {audit['admin_actions_per_s']} "
            f"(load from {audit.get('admin_client', 'httpx')})"
            + (
                f"; the coordinator process spent {cpu} µs of CPU per action "
                f"({audit.get('admin_cpu_share')} of a core)"
                if cpu is not None
                else ""
            )
            + (
                f"; the load generator {audit['admin_load_cpu_share']} of a core"
                if audit.get("admin_load_cpu_share") is not None
                else ""
            )
            + (
                f"; afterwards the chain verified with {audit['admin_billing_events']} billing "
                f"events for {audit['admin_billing_acked']} acknowledged."
                if audit.get("admin_billing_acked") is not None
                else "."
            )
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--admin-seconds", type=float, default=10.0, help="0 skips")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="load generator for admin actions/s (auto: wrk when installed)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vp-bench-audit-") as tmp:
        results: dict[str, Any] = {}
        if args.events:
            results["audit"] = run_audit_scale(args.events, Path(tmp))
        if args.admin_seconds:
            measured = measure_admin_throughput(
                Path(tmp), args.concurrency, args.admin_seconds, args.client
            )
            results.update(admin_results(measured))
            print(
                f"admin actions/s ({args.concurrency} clients, HTTP, {measured.client}): "
                f"{measured.actions_per_s:,.0f}; coordinator CPU "
                f"{measured.cpu_us_per_action:,.0f} µs/action, "
                f"{measured.coordinator_cpu_share:.0%} of a core"
                + (
                    f"; wrk {measured.load_cpu_share:.0%} of a core"
                    if measured.load_cpu_share is not None
                    else ""
                )
                + f"; chain verified, {measured.billing_events} billing events in the log"
                + (
                    f" ({measured.billing_acked} acknowledged)"
                    if measured.billing_acked is not None
                    else ""
                ),
                flush=True,
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
