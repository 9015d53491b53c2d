"""A flood from one client beside steady clients: what the steady ones see, alone and during it.

Used by the flood tests (through ``vectorpanda up`` and through the fleet's
nginx) and by ``benchmarks/flood.py``. The flood is ``wrk`` (C, keep-alive
connections sending as fast as the answers come back); the steady clients are
Python threads sending one small query at a fixed pace.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

QUERY = {"vector": [0.1, 0.2, 0.3, 0.4], "top_k": 3}


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
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def wrk_path() -> str | None:
    return shutil.which("wrk")


def start_flood(
    url: str, api_key: str, seconds: int, connections: int = 64, workdir: Path | None = None
) -> subprocess.Popen[str]:
    """``wrk`` sending the steady clients' query as fast as it can, under ``api_key``."""
    wrk = wrk_path()
    assert wrk is not None
    script = (workdir or Path("/tmp")) / "vp-flood.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.body = \'{"vector": [0.1, 0.2, 0.3, 0.4], "top_k": 3}\'\n'
    )
    return subprocess.Popen(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            "-H",
            f"Authorization: Bearer {api_key}",
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
