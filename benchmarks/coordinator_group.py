"""Issue 16's figures: admin actions/s through 1 and 3 coordinators (SQLite and
PostgreSQL), and data-plane queries/s through 1 and 2 coordinators.

    .venv/bin/python -m benchmarks.coordinator_group                       # 3,000 actions a run
    .venv/bin/python -m benchmarks.coordinator_group --actions 600 --query-seconds 5

Each run is a real ``vectorpanda up`` with ``VP_COORDINATOR_PROCESSES`` coordinator
processes on one port and two workers; on PostgreSQL the control plane is a
throwaway database on the server ``--pg-url`` names (created, then dropped). Admin
actions (``POST /admin/v1/clients``, one event each) are sent from several threads
on fresh connections, so the kernel spreads them over the processes; every run ends
with the event log read back gap-free and ``/admin/v1/audit/verify`` ok. Queries go
through keep-alive connections, one per thread, which the kernel also spreads.
Figures from one run on one machine compare with each other, not with other runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.control_plane import DEFAULT_PG, throwaway_pg
from tests.stack import Stack, running_stack

SENDERS = 8
QUERY_THREADS = 16
DIM = 64
VECTORS = 5_000


def _fresh() -> httpx.Client:
    return httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0))


def _events(http: httpx.Client, stack: Stack) -> list[int]:
    seqs: list[int] = []
    after = 0
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    while True:
        r = http.get(
            f"{stack.url}/admin/v1/events",
            params={"after_seq": after, "limit": 500},
            headers=headers,
        )
        page = r.raise_for_status().json()["events"]
        if not page:
            return seqs
        seqs += [int(e["seq"]) for e in page]
        after = seqs[-1]


@contextmanager
def _group(coordinators: int, database_url: str | None, workers: int = 2) -> Iterator[Stack]:
    env = {"VP_COORDINATOR_PROCESSES": str(coordinators)}
    if database_url is not None:
        env["VP_DATABASE_URL"] = database_url
    with (
        tempfile.TemporaryDirectory(prefix="vp-bench-group-") as tmp,
        running_stack(Path(tmp) / "vp", workers=workers, **env) as stack,
    ):
        yield stack


def admin_run(store: str, coordinators: int, actions: int, pg_url: str) -> dict[str, Any]:
    """Admin actions/s through ``coordinators`` processes; the log checked afterwards."""
    database = throwaway_pg(pg_url) if store == "postgresql" else _no_db()
    with database as url, _group(coordinators, url) as stack:
        http = _fresh()
        headers = {"Authorization": f"Bearer {stack.admin_token}"}
        before = len(_events(http, stack))
        local = threading.local()

        def act(n: int) -> int:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = _fresh()
            body = {"name": f"bench-{n}", "email": f"b{n}@example.com"}
            r = client.post(f"{stack.url}/admin/v1/clients", json=body, headers=headers)
            return r.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(SENDERS) as pool:
            statuses = list(pool.map(act, range(actions)))
        wall = time.perf_counter() - started
        seqs = _events(http, stack)
        verify = http.get(f"{stack.url}/admin/v1/audit/verify", headers=headers).json()
        http.close()
    ok = statuses.count(201)
    gap_free = seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= before + ok
    return {
        "store": store,
        "coordinators": coordinators,
        "actions": actions,
        "acknowledged": ok,
        "seconds": round(wall, 2),
        "actions_per_s": round(ok / wall, 1),
        "gap_free": gap_free,
        "chain_ok": bool(verify.get("ok")),
    }


@contextmanager
def _no_db() -> Iterator[None]:
    yield None


def query_run(coordinators: int, seconds: float) -> dict[str, Any]:
    """Queries/s (k=10, one vector each) through ``coordinators`` processes."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((VECTORS, DIM)).astype(np.float32)
    with _group(coordinators, None) as stack:
        with stack.admin() as admin:
            body = {"name": "qbench", "email": "q@example.com", "tier": "premium"}
            cid = admin.post("/admin/v1/clients", json=body).raise_for_status().json()
            scopes = {"scopes": ["read", "write", "manage"]}
            issued = admin.post(f"/admin/v1/clients/{cid['client_id']}/keys", json=scopes)
            key = issued.raise_for_status().json()["api_key"]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as http:
            spec = {"name": "q", "dimension": DIM, "metric": "cosine"}
            http.post("/v1/collections", json=spec).raise_for_status()
            for start in range(0, VECTORS, 500):
                rows = [
                    {"id": str(start + i), "values": v.tolist()}
                    for i, v in enumerate(vectors[start : start + 500])
                ]
                http.post("/v1/collections/q/upsert", json={"vectors": rows}).raise_for_status()
        stop = time.monotonic() + seconds
        counts: list[int] = []
        errors: list[int] = []
        pids: set[int] = set()

        def loop(seed: int) -> None:
            local_rng = np.random.default_rng(seed)
            done = bad = 0
            # One keep-alive connection per thread: the kernel spreads the connections.
            with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as client:
                while time.monotonic() < stop:
                    q = vectors[int(local_rng.integers(VECTORS))].tolist()
                    r = client.post("/v1/collections/q/query", json={"vector": q, "top_k": 10})
                    if r.status_code == 200:
                        done += 1
                    else:
                        bad += 1
            counts.append(done)
            errors.append(bad)

        started = time.perf_counter()
        threads = [threading.Thread(target=loop, args=(n,)) for n in range(QUERY_THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        with _fresh() as http:
            for _ in range(40):
                r = http.get(
                    f"{stack.url}/admin/v1/workers",
                    headers={"Authorization": f"Bearer {stack.admin_token}"},
                )
                pids.add(int(r.json()["coordinator"]["pid"]))
    return {
        "coordinators": coordinators,
        "seconds": round(wall, 2),
        "queries": sum(counts),
        "errors": sum(errors),
        "queries_per_s": round(sum(counts) / wall, 1),
        "processes_seen": len(pids),
    }


def run_group_bench(actions: int, query_seconds: float, pg_url: str = DEFAULT_PG) -> dict[str, Any]:
    admin = [
        admin_run(store, n, actions, pg_url) for store in ("sqlite", "postgresql") for n in (1, 3)
    ]
    queries = [query_run(n, query_seconds) for n in (1, 2)]
    return {"admin": admin, "queries": queries}


def group_markdown(result: dict[str, Any] | None) -> str:
    if not result:
        return ""
    lines = [
        "",
        "## Coordinator group (issue 16)",
        "",
        "Admin actions (`POST /admin/v1/clients`, one event each) from "
        f"{SENDERS} threads on fresh connections; log gap-free and chain verified after each run.",
        "",
        "| control database | coordinators | actions | s | actions/s | gap-free | chain ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["admin"]:
        lines.append(
            f"| {r['store']} | {r['coordinators']} | {r['acknowledged']} | {r['seconds']} "
            f"| {r['actions_per_s']} | {r['gap_free']} | {r['chain_ok']} |"
        )
    lines += [
        "",
        f"Data-plane queries (k=10, {VECTORS} x {DIM} vectors) from {QUERY_THREADS} "
        "keep-alive connections:",
        "",
        "| coordinators | s | queries | errors | q/s | processes seen |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["queries"]:
        lines.append(
            f"| {r['coordinators']} | {r['seconds']} | {r['queries']} | {r['errors']} "
            f"| {r['queries_per_s']} | {r['processes_seen']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--actions", type=int, default=3000, help="admin actions per run")
    p.add_argument("--query-seconds", type=float, default=10.0, help="seconds of queries per run")
    p.add_argument("--pg-url", default=DEFAULT_PG, help="a maintenance database on the server")
    args = p.parse_args(argv)
    result = run_group_bench(args.actions, args.query_seconds, args.pg_url)
    print(group_markdown(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
