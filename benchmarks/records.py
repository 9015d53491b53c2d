"""List, count and update figures through a real ``vectorpanda up`` (SDK, loopback).

Fills one flat collection with ``--vectors`` vectors (dimension 8, metadata
``{"g": i % 10}``), then times: a full walk in pages of 1000 (ids only, and with
metadata), a filtered walk, count with and without a filter, updates by filter
(a tenth, and all) and by 1000 ids. One run each: these are orders of magnitude,
not a latency study.

    .venv/bin/python -m benchmarks.records [--vectors 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.stack import running_stack
from vectorpanda_client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    n = parser.parse_args().vectors
    with running_stack(Path(tempfile.mkdtemp(prefix="vp-records-"))) as stack:
        key = stack.new_client("records", tier="premium")
        with Client(stack.url, key) as client:
            client.create_collection("m", 8, "l2")
            col = client.collection("m")
            data = np.random.default_rng(1).standard_normal((n, 8)).astype(np.float32)
            col.upsert([f"id{i:09d}" for i in range(n)], data, [{"g": i % 10} for i in range(n)])
            first_ids = [f"id{i:09d}" for i in range(1000)]
            cases: list[tuple[str, Callable[[], int]]] = [
                ("list, pages of 1000", lambda: sum(1 for _ in col.list(page_size=1000))),
                (
                    "list with metadata, pages of 1000",
                    lambda: sum(1 for _ in col.list(page_size=1000, include_metadata=True)),
                ),
                ("list filter g=3", lambda: sum(1 for _ in col.list(filter={"g": 3}))),
                ("count", lambda: col.count()),
                ("count filter g=3", lambda: col.count({"g": 3})),
                ("update filter g=3", lambda: col.update(filter={"g": 3}, set={"t": 1})),
                ("update filter {} (all)", lambda: col.update(filter={}, set={"u": True})),
                ("update 1000 ids", lambda: col.update(first_ids, set={"v": "x"})),
            ]
            for label, run in cases:
                started = time.perf_counter()
                result = run()
                print(f"{label:36s} {result:>9d}  {1000 * (time.perf_counter() - started):8.0f} ms")


if __name__ == "__main__":
    main()
