"""A flood from one client beside steady clients: what the steady ones see, alone and during it.

Used by the flood tests (through ``vectorpanda up`` and through the fleet's
nginx) and by ``benchmarks/flood.py``. The flood is ``wrk`` (C, keep-alive
connections sending as fast as the answers come back); the steady clients are
Python threads sending one small query at a fixed pace.
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

QUERY = {"vector": [0.1, 0.2, 0.3, 0.4], "top_k": 3}
# wrk opens its connections at once; the claims are about the sustained flood after that.
FLOOD_RAMP_S = 1.0
# On a shared 2-core machine a quiet run's p99 wanders between 3 and 15 ms from one run
# to the next, which nobody would notice; p99s under this floor count as the floor.
P99_FLOOR_S = 0.015
MEASURE_ROUNDS = 3


@contextmanager
def gc_paused() -> Iterator[None]:
    """The measuring process's own garbage collector off while it times requests.

    A latency client runs in a test or benchmark process that holds many objects; its
    full collections took 14-21 ms there (gc callbacks, next to ``perf sched``), long
    enough to be a p99 of their own, and they fall in the alone or the flooded window by
    chance. The service's latency is what is measured, not the client's collector: the
    heap is frozen and collection paused for the window, then both restored.
    """
    was_enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.unfreeze()


@dataclass
class Steady:
    """One steady client's answers: latencies of its 200s and every other status it got."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def prepare_collection(client: httpx.Client, name: str = "flood") -> None:
    r = client.post("/v1/collections", json={"name": name, "dimension": 4, "metric": "cosine"})
    assert r.status_code == 201, r.text
    rows = [{"id": f"v{i}", "values": [i % 7, i % 5, i % 3, 1.0]} for i in range(200)]
    r = client.post(f"/v1/collections/{name}/upsert", json={"vectors": rows})
    assert r.status_code == 200, r.text


def run_steady(
    clients: dict[str, httpx.Client], seconds: float, pace_s: float = 0.02
) -> list[Steady]:
    """Each client queries its own collection every ``pace_s`` for ``seconds``."""
    results = [Steady(name) for name in clients]
    stop_at = time.monotonic() + seconds

    def loop(client: httpx.Client, out: Steady) -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            r = client.post("/v1/collections/flood/query", json=QUERY)
            took = time.perf_counter() - started
            if r.status_code == 200:
                out.latencies.append(took)
            else:
                out.errors.append(r.status_code)
            time.sleep(max(0.0, pace_s - took))

    threads = [
        threading.Thread(target=loop, args=(c, out), daemon=True)
        for c, out in zip(clients.values(), results, strict=True)
    ]
    with gc_paused():
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return results


def wrk_path() -> str | None:
    return shutil.which("wrk")


def require_wrk() -> None:
    """Skip the calling test when ``wrk`` is missing (fail it when ``CI`` is set)."""
    import pytest  # here: benchmarks/flood.py uses this module without pytest

    if wrk_path() is None:
        reason = "wrk is not installed (apt-get install wrk); the flood test needs it"
        print(reason, file=sys.stderr)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def start_flood(
    url: str,
    api_key: str | None,
    seconds: int,
    connections: int = 64,
    workdir: Path | None = None,
    body_bytes: int = 0,
) -> subprocess.Popen[str]:
    """``wrk`` sending the steady clients' query as fast as it can, under ``api_key`` (None:
    no credential); ``body_bytes`` pads the query's body to that size."""
    wrk = wrk_path()
    assert wrk is not None
    body = orjson.dumps(QUERY)
    if body_bytes > len(body):
        padding = body_bytes - len(body) - len(b',"padding":""')
        body = body[:-1] + b',"padding":"' + b"x" * padding + b'"}'
    script = (workdir or Path("/tmp")) / f"vp-flood-{len(body)}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{body.decode()}'\n"
    )
    credential = [] if api_key is None else ["-H", f"Authorization: Bearer {api_key}"]
    return subprocess.Popen(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            *credential,
            f"{url}/v1/collections/flood/query",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def flood_requests(wrk_output: str) -> int:
    """The number of requests ``wrk`` reports it completed."""
    for line in wrk_output.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    raise AssertionError("wrk printed no request count:\n" + wrk_output)


# One round: the steady clients alone, the same clients during a flood, and wrk's output.
Round = tuple[list[Steady], list[Steady], str]


def flood_round(
    steady: dict[str, httpx.Client],
    url: str,
    api_key: str | None,
    *,
    alone_s: float,
    flood_s: int,
    during_s: float,
    workdir: Path,
    pace_s: float = 0.02,
) -> Round:
    """The steady clients alone for ``alone_s``; then ``wrk`` floods for ``flood_s`` and,
    once its connections are up (``FLOOD_RAMP_S``), the same clients for ``during_s``."""
    alone = run_steady(steady, alone_s, pace_s)
    flood = start_flood(url, api_key, flood_s, workdir=workdir)
    try:
        time.sleep(FLOOD_RAMP_S)  # measure the sustained flood, not its connection setup
        during = run_steady(steady, during_s, pace_s)
    finally:
        out, _ = flood.communicate(timeout=flood_s + 60)
    return alone, during, out


def within_2x_in_rounds(
    measure: Callable[[], Round], rounds: int = MEASURE_ROUNDS, between_s: float = 0.0
) -> None:
    """The steady clients' p99 during the flood stays within 2x their p99 alone (p99s under
    ``P99_FLOOR_S`` count as it), with no error, in one of up to ``rounds`` rounds.

    The latency claim is measured on a shared 2-core machine (wrk, the coordinator, a
    worker and the test), so a round whose p99 misses gets another; a real slowdown shows
    in every round. Errors are never forgiven: any error in any round fails at once.
    ``between_s`` lets the flooder's buckets refill before the next round.
    """
    misses = []
    for _ in range(rounds):
        alone, during, out = measure()
        for steady in (*alone, *during):
            assert not steady.errors, (steady.name, steady.errors[:5])
        slow = [
            f"{after.name}: p99 {after.p99() * 1000:.1f} ms during the flood, "
            f"{before.p99() * 1000:.1f} ms alone"
            for before, after in zip(alone, during, strict=True)
            if after.p99() > 2 * max(before.p99(), P99_FLOOR_S)
        ]
        if not slow:
            return
        misses.append("; ".join(slow) + f"\nwrk:\n{out}")
        time.sleep(between_s)
    raise AssertionError(f"p99 over 2x in all {rounds} rounds:\n" + "\n".join(misses))
