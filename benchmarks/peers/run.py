"""``make bench-peers``: VectorPanda, PostgreSQL + pgvector, Chroma and raw FAISS on the
same real sentence embeddings, at equal recall.

    make bench-peers                                  # 100,000 vectors (first run embeds them)
    .venv/bin/python -m benchmarks.peers.run --quick  # 10,000 vectors
    .venv/bin/python -m benchmarks.peers.run --systems faiss,pgvector --wrk-seconds 0

Results: benchmarks/results/peers-<size>-<time>.md / .png / .json, and peers-<size>-latest.*
when every system ran (a ``--systems`` subset leaves those as they were).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers import dataset, faiss_peer, pace, report, wrk
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M, Figures

RESULTS = Path(__file__).resolve().parents[1] / "results"
SYSTEMS = ("faiss", "vectorpanda", "pgvector", "chroma")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 vectors, 3 s wrk runs")
    p.add_argument("--n", type=int, default=100_000, help="vectors in the collection")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries")
    p.add_argument("--exact-queries", type=int, default=200, help="queries timed for exact search")
    p.add_argument("--wrk-seconds", type=float, default=5.0, help="per wrk run; 0 skips wrk")
    p.add_argument("--workers", type=int, default=1, help="VectorPanda workers")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    p.add_argument("--report-only", metavar="JSON", help="rewrite the .md/.png of a results file")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.wrk_seconds = 10_000, min(args.wrk_seconds, 3.0)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    return args


def _attempt(
    name: str, measure: Callable[[], Figures], baseline: Callable[[], float] | None = None
) -> Figures:
    """One system's figures; a system that fails is reported as failed, not fatal. The
    machine's pace just before it goes into its notes, and ``baseline`` (raw FAISS's
    build of the same vectors) is timed just before it: a shared machine can slow down
    between one system and the next."""
    print(f"== {name}", flush=True)
    before = pace.probe()
    paired = baseline() if baseline is not None else None
    started = time.perf_counter()
    try:
        figures = measure()
    except Exception as exc:  # one peer failing (not installed, crashed) must not lose the others
        traceback.print_exc()
        figures = Figures(name, notes=[f"FAILED: {type(exc).__name__}: {exc}"])
    figures.paired_build_s = paired
    figures.notes.append(f"machine pace just before it: {pace.one(before)}")
    print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        raw = json.loads(Path(args.report_only).read_text())
        systems = [Figures.from_plain(s) for s in raw["systems"]]
        write(raw["meta"], systems, _size(raw["meta"]["n"]))
        return
    chosen = args.systems.split(",")
    when = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())
    data, label = dataset.load(args.n, args.queries)
    print(f"data: {label}")
    wrk_seconds = args.wrk_seconds if args.wrk_seconds > 0 and wrk.available() else None
    pace_start = pace.probe()
    print(f"machine pace at the start: {pace.one(pace_start)}", flush=True)
    runs: dict[str, Callable[[], Figures]] = {}
    if "faiss" in chosen:
        runs["raw FAISS"] = lambda: faiss_peer.run(data, args.exact_queries)
    if "vectorpanda" in chosen:
        from benchmarks.peers import vectorpanda_peer

        runs["VectorPanda"] = lambda: vectorpanda_peer.run(
            data, args.exact_queries, args.workers, wrk_seconds
        )
    if "pgvector" in chosen:
        from benchmarks.peers import pgvector_peer

        runs["PostgreSQL + pgvector"] = lambda: pgvector_peer.run(data, args.exact_queries)
    if "chroma" in chosen:
        from benchmarks.peers import chroma_peer

        runs["Chroma"] = lambda: chroma_peer.run(data, wrk_seconds)
    baseline = functools.partial(faiss_peer.build_seconds, data.vectors)
    systems = [
        _attempt(name, measure, None if name == "raw FAISS" else baseline)
        for name, measure in runs.items()
    ]
    pace_end = pace.probe()
    meta: dict[str, Any] = {
        "when": when,
        "n": args.n,
        "queries": args.queries,
        "exact_queries": args.exact_queries,
        "data": label,
        "hnsw_m": HNSW_M,
        "ef_construction": EF_CONSTRUCTION,
        "wrk_seconds": wrk_seconds or "no wrk:",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "pace": {"start": pace_start, "end": pace_end},
        "command": " ".join(["python -m benchmarks.peers.run", *map(shlex.quote, sys.argv[1:])]),
    }
    write(meta, systems, _size(args.n))


def _size(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


def write(meta: dict[str, Any], systems: list[Figures], size: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"peers-{size}-{meta['when']}"
    text = report.markdown(meta, systems)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".png").write_bytes(report.chart(meta, systems))
    raw = {"meta": meta, "systems": [s.plain() for s in systems]}
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print(text)
    # a --systems subset is no comparison with every peer: "latest" stays a full run
    latest = f"peers-{size}-latest"
    if len(systems) == len(SYSTEMS):
        for suffix in (".md", ".png", ".json"):
            shutil.copyfile(stem.with_suffix(suffix), RESULTS / f"{latest}{suffix}")
        kept = f"and {latest}.*"
    else:
        kept = f"a subset of the systems: {latest}.* left as they were"
    print(f"results: {stem}.md / .png / .json ({kept})")


if __name__ == "__main__":
    main()
