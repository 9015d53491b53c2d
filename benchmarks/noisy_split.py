"""Where a quiet client's latency goes while a noisy one floods expensive filters.

    .venv/bin/python -m benchmarks.noisy_split                    # ~2 minutes
    .venv/bin/python -m benchmarks.noisy_split --rounds 3 --switch-ms 5
    .venv/bin/python -m benchmarks.noisy_split --seconds 30 --same-worker-only --no-burner

Client A sends the noisy-neighbour test's queries (``$nin``/``$in`` of 50,000
strings, 8 at a time, by ``wrk``, or with ``--a-client httpx`` from a Python process
of its own); client B sends simple queries
and, between them, ``GET /healthz``, which never reaches a worker. Each round
measures B alone, then B while A floods, in the same run; twice over: with A and
B on the same worker, and on different workers (two workers). The CPU columns
are cores used by the coordinator (the ``up`` process) and the workers, from
/proc. If B's ``/healthz`` slows as much as its queries, and B slows as much
with A on another worker, the time is lost in the shared coordinator and the
host's CPU, not in the worker the tenants share.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from tests.flood import gc_paused
from tests.stack import Stack, running_stack

DIM = 8
FLOODERS = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _client(stack: Stack, name: str, tier: str) -> tuple[str, str]:
    with stack.admin() as admin:
        body = {"name": name, "email": f"{name}@example.com", "tier": tier}
        cid = admin.post("/admin/v1/clients", json=body).json()["client_id"]
        scopes = {"scopes": ["read", "write", "manage"]}
        key = admin.post(f"/admin/v1/clients/{cid}/keys", json=scopes).json()["api_key"]
    return str(cid), str(key)


def _owners(stack: Stack, *tenants: str) -> dict[str, str]:
    """Tenant -> worker, once every one of ``tenants`` shows (with several coordinator
    processes, the one answering learns of a placement at the next heartbeat)."""
    deadline = time.monotonic() + 15
    while True:
        with stack.admin() as admin:
            workers = admin.get("/admin/v1/workers").json()["workers"]
        owners = {t: w["worker_id"] for w in workers for t in w["tenant_ids"]}
        if all(t in owners for t in tenants) or time.monotonic() > deadline:
            return owners
        time.sleep(0.2)


def _collection(stack: Stack, key: str, name: str, meta: Any) -> None:
    rng = np.random.default_rng(7)
    rows = [
        {"id": f"v{i}", "values": rng.standard_normal(DIM).tolist(), "metadata": meta(i)}
        for i in range(200)
    ]
    with stack.client(key) as client:
        spec = {"name": name, "dimension": DIM, "metric": "l2"}
        client.post("/v1/collections", json=spec).raise_for_status()
        client.post(f"/v1/collections/{name}/upsert", json={"vectors": rows}).raise_for_status()


BULK_DIM = 384  # --a-sends upserts: A imports 1,000 x 384 vectors a request, as JSON


def _upsert_bodies() -> list[bytes]:
    rng = np.random.default_rng(3)
    return [
        orjson.dumps(
            {
                "vectors": [
                    {
                        "id": f"b{i}",
                        "values": rng.standard_normal(BULK_DIM).astype(np.float32).tolist(),
                        "metadata": {"n": i, "batch": turn},
                    }
                    for i in range(1000)
                ]
            }
        )
        for turn in range(2)
    ]


def _bodies() -> list[bytes]:
    strings = [f"x{i:07d}" for i in range(50_000)]
    return [
        orjson.dumps({"vector": [0.1] * DIM, "top_k": 10, "filter": doc})
        for doc in (
            {"color": {"$nin": strings}},
            {"color": {"$in": strings}, "n": {"$gte": 0}},
            {"$or": [{"color": {"$nin": strings}}, {"n": {"$in": list(range(10_000))}}]},
        )
    ]


def _flood(url: str, key: str, flooding: Any, stop: Any, counts: Any) -> None:
    """A as a Python client (httpx, one thread per connection)."""
    bodies = _bodies()
    statuses: Counter[int] = Counter()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    def send(turn: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/v1/collections/noisy/query", content=bodies[turn % 3])
                turn += 1
                statuses[r.status_code] += 1
                flooding.set()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(FLOODERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts.put(dict(statuses))


def _flood_wrk(
    url: str, key: str, seconds: float, workdir: Path, sends: str = "filters"
) -> subprocess.Popen[str]:
    """A as ``wrk`` (C; FLOODERS keep-alive connections, the bodies in turn): the load
    generator's own CPU, which shares the host's two cores with the service and B, is a
    small part of what A costs (httpx's was about a tenth of a core)."""
    files = []
    bodies = {
        "filters": _bodies,
        "upserts": _upsert_bodies,
        "fetches": lambda: [orjson.dumps({"ids": [f"b{i}" for i in range(1000)]})],
    }[sends]()
    for n, body in enumerate(bodies):
        files.append(workdir / f"noisy-{n}.json")
        files[-1].write_bytes(body)
    wrk = shutil.which("wrk")
    assert wrk is not None, "wrk is not installed (apt-get install wrk), or use --a-client httpx"
    argv = [wrk, "-t1", f"-c{FLOODERS}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
    argv += ["-s", str(Path(__file__).with_name("noisy_filters.lua"))]
    path = {"filters": "noisy/query", "upserts": "bulk/upsert", "fetches": "bulk/fetch"}[sends]
    argv += [f"{url}/v1/collections/{path}", "--", *map(str, files)]
    env = {**os.environ, "VP_NOISY_KEY": key}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)


def _wrk_answers(out: str) -> int:
    """The 2xx answers wrk reports: its request count less its non-2xx/3xx count."""
    done = bad = 0
    for line in out.splitlines():
        words = line.split()
        if "requests in" in line:
            done = int(words[0])
        elif line.strip().startswith("Non-2xx"):
            bad = int(words[-1])
    return done - bad


def _burn(stop: Any) -> None:
    """A process that only burns CPU (no requests): the host's share of the story."""
    while not stop.is_set():
        sum(range(10_000))


def _steady(stack: Stack, key: str, seconds: float) -> tuple[list[float], list[float]]:
    queries: list[float] = []
    health: list[float] = []
    end = time.monotonic() + seconds
    with (
        stack.client(key) as b,
        httpx.Client(base_url=stack.url, timeout=30) as anon,
        gc_paused(),  # B's own collections are not the service's latency
    ):
        while time.monotonic() < end:
            started = time.perf_counter()
            r = b.post("/v1/collections/quiet/query", json={"vector": [0.5] * DIM, "top_k": 5})
            queries.append(time.perf_counter() - started)
            r.raise_for_status()
            started = time.perf_counter()
            anon.get("/healthz")
            health.append(time.perf_counter() - started)
            time.sleep(0.02)
    return queries, health


def _ms(xs: list[float]) -> str:
    return f"{np.median(xs) * 1000:.1f} / {np.percentile(xs, 99) * 1000:.1f}"


def split(
    same_worker: bool,
    rounds: int,
    seconds: float,
    switch_ms: float,
    processes: int = 1,
    a_client: str = "wrk",
    burner: bool = True,
    a_sends: str = "filters",
) -> list[str]:
    env = {
        "VP_REQUEST_TIMEOUT_S": "3",
        "VP_WORKER_SWITCH_INTERVAL_MS": str(switch_ms),
        "VP_COORDINATOR_PROCESSES": str(processes),
    }
    lines = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_stack(Path(tmp) / "vp", workers=1 if same_worker else 2, **env) as stack,
    ):
        assert stack.proc is not None
        a_id, a_key = _client(stack, "noisy", "premium")
        _collection(stack, a_key, "noisy", lambda i: {"color": f"c{i % 7}", "n": i})
        with stack.client(a_key) as client:  # --a-sends upserts: A's bulk import goes here
            spec = {"name": "bulk", "dimension": BULK_DIM, "metric": "l2"}
            client.post("/v1/collections", json=spec).raise_for_status()
            if a_sends == "fetches":  # the 1,000 vectors A then fetches, all at once
                json = {"content-type": "application/json"}
                upsert = _upsert_bodies()[0]
                r = client.post("/v1/collections/bulk/upsert", content=upsert, headers=json)
                r.raise_for_status()
        for n in range(8):  # with two workers: until B lands on the other one
            b_id, b_key = _client(stack, f"quiet{n}", "standard")
            _collection(stack, b_key, "quiet", lambda i: {"n": i})
            owners = _owners(stack, a_id, b_id)
            if (owners[a_id] == owners[b_id]) == same_worker:
                break
        placed = "same worker" if owners[a_id] == owners[b_id] else "other workers"
        coordinators = [stack.proc.pid, *stack.coordinator_pids()]
        pids = [*coordinators, *stack.worker_pids()]
        n_coord = len(coordinators)
        spawn = multiprocessing.get_context("spawn")
        for _ in range(rounds):
            alone_p99 = 0.0
            for mode in ("alone", "CPU burner", "with A") if burner else ("alone", "with A"):
                flood = burner = wrk = None
                stop = spawn.Event()
                if mode == "with A" and a_client == "wrk":
                    wrk = _flood_wrk(stack.url, a_key, seconds + 3, Path(tmp), a_sends)
                    time.sleep(1.5)
                elif mode == "with A":
                    flooding, counts = spawn.Event(), spawn.Queue()
                    flood = spawn.Process(
                        target=_flood, args=(stack.url, a_key, flooding, stop, counts)
                    )
                    flood.start()
                    flooding.wait(30)
                    time.sleep(1.0)
                elif mode == "CPU burner":
                    burner = spawn.Process(target=_burn, args=(stop,))
                    burner.start()
                    time.sleep(1.0)
                before, started = [_cpu(p) for p in pids], time.monotonic()
                queries, health = _steady(stack, b_key, seconds)
                elapsed = time.monotonic() - started
                used = [(_cpu(p) - b) / elapsed for p, b in zip(pids, before, strict=True)]
                a_done = "-"
                stop.set()
                if flood is not None:
                    a_done = str(counts.get(timeout=60).get(200, 0))
                    flood.join(30)
                if burner is not None:
                    burner.join(30)
                if wrk is not None:
                    out, _ = wrk.communicate(timeout=60)
                    a_done = str(_wrk_answers(out))
                load = Path("/proc/loadavg").read_text().split()[0]
                p99 = float(np.percentile(queries, 99))
                alone_p99 = p99 if mode == "alone" else alone_p99
                lines.append(
                    f"| {placed} | {mode} | {_ms(queries)} | {p99 / alone_p99:.1f}x | "
                    f"{_ms(health)} | {sum(used[:n_coord]):.2f} | {sum(used[n_coord:]):.2f} | "
                    f"{a_done} | {load} |"
                )
                print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--switch-ms", type=float, default=1.0)
    parser.add_argument("--processes", type=int, default=1, help="VP_COORDINATOR_PROCESSES")
    parser.add_argument("--same-worker-only", action="store_true")
    parser.add_argument(
        "--a-client", choices=("wrk", "httpx"), default="wrk", help="what sends A's filters"
    )
    parser.add_argument(
        "--a-sends",
        choices=("filters", "upserts", "fetches"),
        default="filters",
        help="A's flood: 50,000-operand filters, or (wrk only) JSON upserts of 1,000 x 384 "
        "or fetches of those 1,000 vectors",
    )
    parser.add_argument(
        "--no-burner", action="store_true", help="skip the CPU-burner window of each round"
    )
    args = parser.parse_args()
    print(
        f"switch interval {args.switch_ms} ms, {args.seconds:.0f} s per measurement, "
        f"{args.processes} coordinator process(es), A sent by {args.a_client}, "
        f"sending {args.a_sends}\n"
        "| A and B on | B | B query p50 / p99 ms | p99 / alone | B /healthz p50 / p99 ms | "
        "coordinator CPU | workers CPU | A's 200s | load |\n|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for same in (True,) if args.same_worker_only else (True, False):
        split(
            same,
            args.rounds,
            args.seconds,
            args.switch_ms,
            args.processes,
            args.a_client,
            burner=not args.no_burner,
            a_sends=args.a_sends,
        )


if __name__ == "__main__":
    main()
