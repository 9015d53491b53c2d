"""``make bench``: raw FAISS against the whole service over HTTP, plus multi-tenancy.

Sizes come from flags or environment variables (flags win), so a quick run is easy:

    make bench                                   # the issue's full run (takes a while)
    BENCH_N=10000 BENCH_DIM=64 BENCH_QUERIES=200 BENCH_TENANTS=200 make bench
    .venv/bin/python -m benchmarks.run --quick    # about a minute or two

Results go to benchmarks/results/: bench-<time>.md, .png and .json (plus latest.*).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.audit_scale import (
    admin_results,
    audit_markdown,
    measure_admin_throughput,
    run_audit_scale,
)
from benchmarks.backup import backup_markdown, run_backup_bench
from benchmarks.baseline import run_baseline
from benchmarks.coordinator_group import group_markdown, run_group_bench
from benchmarks.data import gaussian_mixture
from benchmarks.report import chart, markdown
from benchmarks.service import run_service
from benchmarks.tenancy import run_tenancy
from benchmarks.timing import Throughput, wait_until_idle
from tests.stack import running_stack

RESULTS = Path(__file__).parent / "results"
QUICK = {
    "n": 10_000,
    "dim": 64,
    "queries": 200,
    "tenants": 100,
    "ef": "16,64",
    "audit_events": 20_000,
    "backup_vectors": 20_000,
    "group_actions": 300,
    "group_query_seconds": 3.0,
}


def _env(name: str, default: Any) -> Any:
    raw = os.environ.get(f"BENCH_{name.upper()}")
    return type(default)(raw) if raw is not None else default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"small sizes: {QUICK}")
    p.add_argument("--n", type=int, default=_env("n", 100_000), help="vectors (BENCH_N)")
    p.add_argument("--dim", type=int, default=_env("dim", 384), help="dimension (BENCH_DIM)")
    p.add_argument("--queries", type=int, default=_env("queries", 1000), help="BENCH_QUERIES")
    p.add_argument("--clusters", type=int, default=_env("clusters", 100))
    p.add_argument("--batch", type=int, default=_env("batch", 100), help="queries per batch")
    p.add_argument("--ef", default=_env("ef", "16,32,64,128"), help="ef_search values, or ''")
    p.add_argument("--workers", type=int, default=_env("workers", 1), help="service workers")
    p.add_argument("--tenants", type=int, default=_env("tenants", 10_000), help="0 skips")
    p.add_argument("--tenant-vectors", type=int, default=_env("tenant_vectors", 100))
    p.add_argument("--churn-seconds", type=float, default=_env("churn_seconds", 10.0))
    p.add_argument(
        "--audit-events",
        type=int,
        default=_env("audit_events", 1_000_000),
        help="generated event log for audit verify/replay (BENCH_AUDIT_EVENTS); 0 skips",
    )
    p.add_argument(
        "--backup-vectors",
        type=int,
        default=_env("backup_vectors", 1_000_000),
        help="vectors of the client backed up and restored (BENCH_BACKUP_VECTORS); 0 skips",
    )
    p.add_argument(
        "--group-actions",
        type=int,
        default=_env("group_actions", 3000),
        help="admin actions per coordinator-group run (BENCH_GROUP_ACTIONS); 0 skips the group",
    )
    p.add_argument(
        "--group-query-seconds",
        type=float,
        default=_env("group_query_seconds", 10.0),
        help="seconds of queries through 1 and 2 coordinators (BENCH_GROUP_QUERY_SECONDS)",
    )
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def _plain(value: Any) -> Any:
    if isinstance(value, Throughput):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ef_values = [int(x) for x in str(args.ef).split(",") if x.strip()]
    concurrencies = (1, 16)
    when = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    print(f"data: {args.n:,} x {args.dim}, {args.queries} queries, ef_search {ef_values}")
    data = gaussian_mixture(args.n, args.dim, args.queries, args.clusters)
    print("baseline: raw FAISS in-process, one thread")
    baseline = run_baseline(data, ef_values, args.batch, concurrencies)
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp:
        with running_stack(Path(tmp) / "main", workers=args.workers) as stack:
            key = _premium_key(stack)
            service, notes = run_service(
                stack.url,
                key,
                data,
                ef_values,
                args.batch,
                concurrencies,
                settle=lambda budget: wait_until_idle(stack.worker_pids(), budget),
            )
        tenancy = None
        if args.tenants > 0:
            print(f"multi-tenancy: {args.tenants:,} tenants x {args.tenant_vectors} vectors")
            tenancy = run_tenancy(
                Path(tmp) / "tenants",
                args.tenants,
                args.tenant_vectors,
                args.dim,
                args.churn_seconds,
                env={},
            )
        audit = None
        if args.audit_events > 0:
            print(f"audit at scale: {args.audit_events:,} generated events")
            audit = run_audit_scale(args.audit_events, Path(tmp))
            audit.update(admin_results(measure_admin_throughput(Path(tmp))))
        backup = None
        if args.backup_vectors > 0:
            print(f"backup and restore: one client of {args.backup_vectors:,} vectors")
            backup = run_backup_bench(args.backup_vectors, 128, Path(tmp))
    group = None
    if args.group_actions > 0:
        print(f"coordinator group: {args.group_actions:,} admin actions, 1 and 3 coordinators")
        group = run_group_bench(args.group_actions, args.group_query_seconds)
    meta = {
        "when": when,
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "clusters": args.clusters,
        "batch": args.batch,
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }
    write_results(when, meta, baseline, service, notes, tenancy, audit, backup, group)


def _premium_key(stack: Any) -> str:
    with stack.admin() as admin:
        body = {"name": "bench", "email": "bench@example.com", "tier": "premium"}
        client_id = admin.post("/admin/v1/clients", json=body).raise_for_status().json()
        scopes = {"scopes": ["read", "write", "manage"]}
        issued = admin.post(f"/admin/v1/clients/{client_id['client_id']}/keys", json=scopes)
        return str(issued.raise_for_status().json()["api_key"])


def write_results(
    when: str,
    meta: dict[str, Any],
    baseline: dict[str, Any],
    service: dict[str, Any],
    notes: list[str],
    tenancy: dict[str, Any] | None,
    audit: dict[str, Any] | None = None,
    backup: dict[str, Any] | None = None,
    group: dict[str, Any] | None = None,
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bench-{when}"
    report = markdown(meta, baseline, service, notes, tenancy) + audit_markdown(audit)
    report += backup_markdown(backup) + group_markdown(group)
    stem.with_suffix(".md").write_text(report)
    stem.with_suffix(".png").write_bytes(chart(meta, baseline, service))
    raw = {"meta": meta, "baseline": baseline, "service": service, "notes": notes}
    raw["tenancy"] = tenancy
    raw["audit"] = audit
    raw["backup"] = backup
    raw["group"] = group
    stem.with_suffix(".json").write_text(json.dumps(_plain(raw), indent=2))
    for suffix in (".md", ".png", ".json"):
        shutil.copyfile(stem.with_suffix(suffix), RESULTS / f"latest{suffix}")
    print(report)
    print(f"results: {stem}.md / .png / .json (and latest.*)")


if __name__ == "__main__":
    main()
