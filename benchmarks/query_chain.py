"""The coordinator's own CPU per accepted query, in process: the ASGI chain alone.

Builds the real app (``create_app``: admission gate, request context, lean query
route, metrics, usage meter, request log on) around a stub router that answers each
query frame at once with a fixed rendered answer, then calls the app's ASGI entry
point with ``--queries`` uvicorn-shaped JSON (or binary) query requests and divides
the process CPU by their number. No uvicorn, socket, worker or FAISS: what is left is
exactly the per-request Python work of the chain from the gate to the router call
(cpu_split measures the whole coordinator, uvicorn included).

    .venv/bin/python -m benchmarks.query_chain [--queries 20000] [--rounds 5]
        [--wire json binary] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import statistics
import struct
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson

from api.app import create_app
from api.binary_query import BINARY_TYPE, MAGIC
from coordinator.accounts.model import Principal
from coordinator.dataplane import DataPlane, Limits
from coordinator.metrics import Metrics
from coordinator.usage import UsageMeter
from vectorpanda.request_log import BatchedLines

KEY = "vp_0123456789abcdef_" + "k" * 43
PRINCIPAL = Principal(
    "c1", "0123456789abcdef", frozenset({"read", "write"}), "d", "premium", "active"
)
ANSWER = orjson.dumps({"matches": [{"id": str(i), "score": 0.5 + i} for i in range(10)]})


class _Router:
    """Answers every frame with the rendered answer, as a worker that renders would."""

    observe_frame = None

    async def call(
        self, tenant: str, op: Any, args: Any, arrays: Any = None, spent_s: float = 0.0
    ) -> Any:
        body = np.frombuffer(ANSWER, dtype=np.uint8)
        return SimpleNamespace(header={"rendered": True}, arrays={"body": body})


async def _authenticate(token: str) -> Principal | None:
    return PRINCIPAL if token == KEY else None


def build() -> Any:
    metrics = Metrics()
    usage = UsageMeter(None)  # type: ignore[arg-type]  # flushes nothing here
    dataplane = DataPlane(_Router(), Limits(), metering=usage)  # type: ignore[arg-type]
    parts: Any = SimpleNamespace(authenticate=_authenticate, uow=None)
    hub: Any = SimpleNamespace()
    return create_app(
        accounts=parts,
        dataplane=dataplane,
        hub=hub,
        admin_token="t",
        metrics=metrics,
        usage_meter=usage,
    )


def _body(wire: str, dim: int) -> tuple[bytes, bytes]:
    vector = np.random.default_rng(0).standard_normal(dim).astype(np.float32)
    if wire == "json":
        return orjson.dumps({"vector": vector.tolist(), "top_k": 10}), b"application/json"
    # api/binary_query.py: VPQ1, P's length, P, then the raw float32 values
    options = orjson.dumps({"top_k": 10, "shape": [dim]})
    frame = MAGIC + struct.pack("<I", len(options)) + options + vector.astype("<f4").tobytes()
    return frame, BINARY_TYPE


async def run(app: Any, n: int, body: bytes, content_type: bytes) -> None:
    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"authorization", f"Bearer {KEY}".encode()),
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"accept", b"*/*"),
    ]
    sent: list[Any] = []
    answered = asyncio.Event()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.body":
            sent.append(message["body"])
            answered.set()

    for _ in range(n):
        first = True

        async def receive() -> Any:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        answered.clear()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8080),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": "/v1/collections/h/query",
            "raw_path": b"/v1/collections/h/query",
            "query_string": b"",
            "headers": list(headers),
            "state": {},
        }
        await app(scope, receive, send)
    if sent[-1] != ANSWER:
        raise SystemExit(f"unexpected answer: {sent[-1][:200]!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--wire", nargs="+", choices=["json", "binary"], default=["json"])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    requests = logging.getLogger("vectorpanda.requests")
    requests.setLevel(logging.INFO)
    requests.propagate = False
    target = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    target.setFormatter(logging.Formatter("%(message)s"))
    requests.addHandler(BatchedLines(target))
    app = build()
    loop = asyncio.new_event_loop()
    for wire in args.wire:
        body, content_type = _body(wire, args.dim)
        loop.run_until_complete(run(app, 200, body, content_type))  # warm up
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            loop.run_until_complete(run(app, args.queries, body, content_type))
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(35)
            continue
        per_query = []
        for _ in range(args.rounds):
            started = time.process_time()
            loop.run_until_complete(run(app, args.queries, body, content_type))
            per_query.append((time.process_time() - started) / args.queries * 1e6)
        print(
            f"{wire}: {statistics.median(per_query):.1f} us CPU/query (median of "
            f"{args.rounds}; min {min(per_query):.1f})"
        )


if __name__ == "__main__":
    main()
