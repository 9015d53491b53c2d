"""The worker's own CPU per quick query, in process: the frame path alone.

Builds a real ``WorkerService`` (tenant registry on a temporary directory, one HNSW
collection of ``--n`` random vectors, graph built) and a ``WorkerSession`` on a
stand-in socket, then hands it ``--queries`` single-vector QUERY frames encoded
exactly as the coordinator encodes them (``DataPlane.query_json``: rendered answer,
deadline, tenant and epoch), one at a time, and divides this process's CPU by their
number. Raw FAISS on the same graph (``search_c``, one query per call) is the baseline,
in the same run. No socket, coordinator or HTTP: what is left is exactly the worker's
per-query Python around FAISS, from the bytes of a frame to the bytes of its reply
(cpu_split measures the whole worker process, websockets included).

``session`` drives the session as the socket does (``_on_binary``, the batcher's
turn, the reply handed to the socket as ``write_now`` hands it; websockets' own
framing is left out, as it is the same for any server on this stack);
``service`` calls the synchronous part alone (decode, ``answer_now``, encode).

    .venv/bin/python -m benchmarks.worker_chain [--n 20000] [--dim 384]
        [--queries 5000] [--rounds 5] [--mode session service] [--format binary json]
        [--together 1] [--profile]

``--together N`` hands the session N frames before its turn runs, as concurrent
clients do (they then share a FAISS search).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import standard_normal
from workers.faiss_runtime import faiss, one_openmp_thread
from workers.main import WorkerSession
from workers.maintenance import Maintenance
from workers.protocol import decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers.work_budget import WorkBudget

TENANT = "bench_1"
EPOCH = 1
COLLECTION = "c"


class _Socket:
    """The coordinator's end: the future the driver waits on is resolved once the
    replies it expects have all been written."""

    def __init__(self) -> None:
        self.waiting: asyncio.Future[list[bytes]] | None = None
        self.expected = 0
        self.replies: list[bytes] = []

    def __aiter__(self) -> Any:  # pragma: no cover - the driver never reads through it
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        self.take([data])

    def take(self, frames: list[bytes]) -> bool:
        """The socket taking replies at once (the worker's ``write_now``)."""
        self.replies.extend(frames)
        waiting = self.waiting
        if waiting is not None and len(self.replies) >= self.expected and not waiting.done():
            self.waiting = None
            waiting.set_result(self.replies)
        return True


async def _call(svc: WorkerService, op: str, arrays: Any = None, **header: Any) -> dict[str, Any]:
    wire = encode_frame(
        {"op": op, "rid": 1, "tenant": TENANT, "epoch": EPOCH, **header}, arrays or {}
    )
    reply, _ = await svc.handle(decode_frame(wire))
    if not reply.get("ok"):
        raise RuntimeError(f"{op}: {reply}")
    return reply


async def _loaded_service(root: Path, n: int, dim: int) -> WorkerService:
    """A service owning TENANT with one cosine HNSW collection of ``n`` vectors, graphed."""
    svc = WorkerService(TenantRegistry(root, 1 << 34, maintenance=Maintenance(autostart=False)))
    await _call(svc, "assign")
    await _call(
        svc,
        "create_collection",
        collection=COLLECTION,
        dimension=dim,
        metric="cosine",
        index="hnsw",
        hnsw={"m": 16, "ef_construction": 200},
    )
    data, _ = standard_normal(n, dim, 0)
    for start in range(0, n, 5000):
        chunk = data[start : start + 5000]
        ids = [f"v{i}" for i in range(start, start + len(chunk))]
        await _call(svc, "upsert", {"vectors": chunk}, collection=COLLECTION, ids=ids)
    svc.registry.open(TENANT).collection(COLLECTION).flush_index()
    return svc


def _frames(queries: np.ndarray, ef: int, binary: bool) -> list[bytes]:
    out = []
    for rid, q in enumerate(queries, start=10):
        header: dict[str, Any] = {
            "op": "query",
            "rid": rid,
            "tenant": TENANT,
            "epoch": EPOCH,
            "collection": COLLECTION,
            "top_k": 10,
            "include_metadata": False,
            "include_values": False,
            "filter": None,
            "ef_search": ef,
            "render": "single",
            "deadline_ms": 30_000,
        }
        if binary:
            header["render_format"] = "binary"
        out.append(encode_frame(header, {"queries": q[None, :]}))
    return out


def _raw_cpu_us(svc: WorkerService, queries: np.ndarray, ef: int) -> float:
    """FAISS alone on the collection's own graph: search_c, one query per call."""
    graph = svc.registry.open(TENANT).collection(COLLECTION)._index._graph  # type: ignore[union-attr]
    lib = faiss()
    params = lib.SearchParametersHNSW()
    params.efSearch = ef
    scores = np.empty((1, 10), np.float32)
    found = np.empty((1, 10), np.int64)
    normed = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    rows = [np.ascontiguousarray(q[None, :], dtype=np.float32) for q in normed]
    started = time.process_time()
    for x in rows:
        graph.search_c(1, lib.swig_ptr(x), 10, lib.swig_ptr(scores), lib.swig_ptr(found), params)
    return (time.process_time() - started) / len(rows) * 1e6


def _service_cpu_us(svc: WorkerService, frames: list[bytes]) -> float:
    started = time.process_time()
    for raw in frames:
        frame = decode_frame(raw)
        reply = svc.answer_now([(frame, WorkBudget.from_header(frame.header))])[0]
        assert reply is not None
        encode_frame(*reply)
    return (time.process_time() - started) / len(frames) * 1e6


async def _session_cpu_us(svc: WorkerService, frames: list[bytes], together: int) -> float:
    """``together`` frames at a time arrive before the batcher's turn (concurrency)."""
    socket = _Socket()
    session = WorkerSession(socket, svc, 60.0)  # type: ignore[arg-type]
    session._lease_until = time.monotonic() + 3600
    session._written_now = socket.take  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for start in range(0, len(frames), together):
        group = frames[start : start + together]
        socket.waiting, socket.expected, socket.replies = loop.create_future(), len(group), []
        for raw in group:
            session._on_binary(raw)
        replies = await socket.waiting
        assert all(reply[4:40].find(b'"ok":true') >= 0 for reply in replies), replies[0][:200]
    return (time.process_time() - started) / len(frames) * 1e6


async def _run(args: argparse.Namespace) -> None:
    one_openmp_thread()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building {args.n} x {args.dim} (HNSW M=16, ef_construction 200)...")
        svc = await _loaded_service(Path(tmp) / "hot", args.n, args.dim)
        _, queries = standard_normal(args.n, args.dim, args.queries)
        sets = {form: _frames(queries, args.ef, form == "binary") for form in args.format}
        figures: dict[str, list[float]] = {"raw FAISS": []}
        for mode in args.mode:
            for form in args.format:
                figures[f"{mode} {form}"] = []
        profiler = cProfile.Profile() if args.profile else None
        for _ in range(args.rounds):
            figures["raw FAISS"].append(_raw_cpu_us(svc, queries, args.ef))
            for mode in args.mode:
                for form in args.format:
                    if profiler is not None:
                        profiler.enable()
                    if mode == "service":
                        cpu = _service_cpu_us(svc, sets[form])
                    else:
                        cpu = await _session_cpu_us(svc, sets[form], args.together)
                    if profiler is not None:
                        profiler.disable()
                    figures[f"{mode} {form}"].append(cpu)
        await svc.release_all()
    raw = statistics.median(figures["raw FAISS"])
    print(f"\nworker CPU per single-vector query, ef_search {args.ef}, median of {args.rounds}:")
    print(f"{'path':<18}{'µs/query':>10}{'minus FAISS':>13}   rounds")
    for name, values in figures.items():
        med = statistics.median(values)
        extra = "" if name == "raw FAISS" else f"{med - raw:+.0f}"
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:<18}{med:>10.0f}{extra:>13}   {rounds}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ef", type=int, default=64)
    parser.add_argument("--mode", nargs="+", choices=["session", "service"], default=["session"])
    parser.add_argument("--format", nargs="+", choices=["binary", "json"], default=["binary"])
    parser.add_argument(
        "--together", type=int, default=1, help="frames that arrive at once (session mode)"
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
