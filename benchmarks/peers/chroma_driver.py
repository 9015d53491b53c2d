"""Chroma measured by its own Python client; run in Chroma's venv by ``chroma_peer``.

    <chroma-venv>/bin/python -m benchmarks.peers.chroma_driver --data data.npz \
        --out figures.json [--wrk-seconds S]

It starts ``chroma run`` itself (temporary data dir, its own port) because Chroma
1.5's server keeps the ef_search an index was loaded with: a changed ``ef_search``
(``collection.modify``) takes effect only after a restart, so the server is restarted
whenever the ef_search to measure changes. Only numpy, chromadb, httpx and the
stdlib-only parts of this package are imported here.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.peers import procstat, wrk
from benchmarks.peers.measure import (
    EF_CONSTRUCTION,
    HNSW_M,
    Figures,
    Point,
    settle,
    sweep_and_time,
)

NAME = "peers"
ROUTE = "/api/v2/tenants/default_tenant/databases/default_database/collections/{id}/query"


class Server:
    """``chroma run`` on a data dir, restartable; ``pids`` is updated in place."""

    def __init__(self, path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.path = path
        self.pids: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (path.parent / "chroma.log").open("ab")

    def start(self) -> None:
        chroma = str(Path(sys.executable).parent / "chroma")
        cmd = [chroma, "run", "--path", str(self.path), "--host", "127.0.0.1",
               "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.pids[:] = [self.proc.pid]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("chroma run exited at start")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v2/heartbeat").is_success:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise TimeoutError("chroma run did not answer its heartbeat")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--wrk-seconds", type=float, default=0.0)
    args = p.parse_args()
    stored = np.load(args.data)
    with tempfile.TemporaryDirectory(prefix="vp-peers-chroma-") as tmp:
        server = Server(Path(tmp) / "db")
        server.start()
        try:
            figures = measure(server, stored["vectors"], stored["queries"], stored["truth"], args)
        finally:
            server.stop()
    Path(args.out).write_text(json.dumps(figures.plain()))


def measure(
    server: Server, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: Any
) -> Figures:
    import chromadb

    figures = Figures(f"Chroma {chromadb.__version__} server (chromadb client)")
    client = chromadb.HttpClient(host="127.0.0.1", port=server.port)
    hnsw = {"space": "l2", "max_neighbors": HNSW_M, "ef_construction": EF_CONSTRUCTION}
    col = client.create_collection(NAME, configuration={"hnsw": hnsw})
    batch = min(client.get_max_batch_size(), 5000)
    ids = [str(i) for i in range(len(vectors))]
    cpu = procstat.cpu_seconds(server.pids)
    started = time.perf_counter()
    for start in range(0, len(ids), batch):
        col.add(ids=ids[start : start + batch], embeddings=vectors[start : start + batch])
    sent = time.perf_counter() - started
    waited = settle(server.pids, budget_s=1800)
    figures.ingest_vps = len(ids) / sent
    figures.indexed_s = sent + waited
    figures.indexed_cpu_s = procstat.cpu_seconds(server.pids) - cpu
    figures.memory_mib = procstat.pss_mib(server.pids)
    figures.rss_mib = procstat.rss_mib(server.pids)
    figures.notes.append(
        f"add() in batches of {batch}: {sent:.1f} s, then {waited:.1f} s until the server was "
        "idle; no exact mode (Chroma always searches its HNSW graph once it has one); the "
        "server is restarted for each ef_search (a modified ef_search applies only on reload)"
    )
    current: dict[str, Any] = {"ef": None, "cols": []}

    def use(ef: int) -> list[Any]:
        if current["ef"] != ef:
            col.modify(configuration={"hnsw": {"ef_search": ef}})
            server.stop()
            server.start()
            clients = [chromadb.HttpClient(host="127.0.0.1", port=server.port) for _ in range(16)]
            current["ef"], current["cols"] = ef, [c.get_collection(NAME) for c in clients]
            current["cols"][0].query(query_embeddings=[queries[0]], n_results=10)  # load it
        return list(current["cols"])

    def searcher(ef: int | None) -> Callable[[int], Any]:
        cols = use(int(ef or 100))

        def runner(w: int) -> Callable[[np.ndarray], list[int]]:
            def ask(q: np.ndarray) -> list[int]:
                found = cols[w].query(query_embeddings=[q], n_results=10, include=["distances"])
                return [int(i) for i in found["ids"][0]]

            return ask

        return runner

    def with_wrk(point: Point) -> None:
        if not args.wrk_seconds:
            return
        use(int(point.ef or 100))
        body = {"query_embeddings": [queries[0].tolist()], "n_results": 10,
                "include": ["distances"]}  # fmt: skip
        url = f"http://127.0.0.1:{server.port}" + ROUTE.format(id=col.id)
        for conc in (1, 16):
            point.runs[f"wrk c{conc}"] = wrk.run(
                url, json.dumps(body), {}, conc, args.wrk_seconds, server.pids
            )

    sweep_and_time(figures, searcher, queries, truth, server.pids, 0, exact=False, extra=with_wrk)
    return figures


if __name__ == "__main__":
    main()
