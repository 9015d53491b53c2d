"""What every peer is measured by, whatever its client: an ef_search sweep for recall,
then throughput, latency and server CPU at the equal-recall points and for exact search.

numpy and stdlib only (plus ``benchmarks.timing``), so the Chroma driver runs it in
Chroma's own venv.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.peers import procstat
from benchmarks.timing import Throughput, run_concurrent

TOP_K = 10
# The same graph in every system: M=16 links per node, ef_construction 100 (Chroma's
# default; pgvector's is 64, FAISS's 40, VectorPanda's 200).
HNSW_M = 16
EF_CONSTRUCTION = 100
TARGETS = (0.95, 0.99)
# Each system is timed at the smallest of these reaching a target, so the steps set how
# far past the target a system may be measured: at most a quarter more ef_search from
# 16 to 192 (a graph at 0.9896 at 128 was measured at 192, half as much again, before
# 112 and 160 were added; at 18:46 on 2026-12-03 pgvector at 0.9511 with ef 24 was
# timed against VectorPanda at 0.9554 with ef 32, a third more, before 20, 28, 36 and
# 56 were added). Finer steps narrow every system's overshoot alike.
EF_SWEEP = (10, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 256, 384, 512)
CONCURRENCIES = (1, 16)

# Given ef_search (None: exact search), make the search function of one client thread:
# thread number -> (query vector -> the ids of its top 10, as row numbers).
Searcher = Callable[[int | None], Callable[[int], Callable[[np.ndarray], list[int]]]]


@dataclass
class Point:
    """One operating point of one system: exact search, or HNSW at one ef_search."""

    mode: str  # "exact" or "hnsw ef=N"
    ef: int | None
    recall: float
    reaches: list[float] = field(default_factory=list)  # recall targets it is the point for
    runs: dict[str, Any] = field(default_factory=dict)  # "c1", "c16", "wrk c1", ...


@dataclass
class Figures:
    system: str
    ingest_vps: float | None = None  # vectors stored per second, as the client saw it
    indexed_s: float | None = (
        None  # from the first vector sent until all are searchable by the index
    )
    indexed_cpu_s: float | None = None  # server CPU spent storing and indexing (load-proof)
    memory_mib: float | None = None  # PSS of the server processes after loading
    sweep: dict[int, float] = field(default_factory=dict)  # ef_search -> recall@10
    points: list[Point] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rss_mib: float | None = None  # RSS of the server processes (shared pages in each)
    # Raw FAISS's build of the same vectors with every core, timed just before this
    # system ran: the machine's speed drifts over a run, so this baseline is the nearer.
    paired_build_s: float | None = None

    def plain(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_plain(cls, raw: dict[str, Any]) -> Figures:
        """The inverse of ``plain`` (JSON from the Chroma driver or a results file)."""
        fields = {k: v for k, v in raw.items() if k not in ("sweep", "points")}
        figures = cls(**fields)
        figures.sweep = {int(k): v for k, v in raw["sweep"].items()}
        figures.points = [Point(**p) for p in raw["points"]]
        return figures


def _plain(value: Any) -> Any:
    if isinstance(value, Throughput):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = TOP_K) -> float:
    # The same measure as benchmarks.data.recall_at_k, which imports faiss (not in Chroma's venv).
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def recall(searcher: Searcher, ef: int | None, queries: np.ndarray, truth: np.ndarray) -> float:
    ask = searcher(ef)(0)
    return recall_at_k([ask(q) for q in queries], truth)


def choose(sweep: dict[int, float]) -> dict[int, list[float]]:
    """The smallest ef_search reaching each target (the largest tried if none does)."""
    chosen: dict[int, list[float]] = {}
    for target in TARGETS:
        good = [ef for ef, r in sorted(sweep.items()) if r >= target]
        ef = good[0] if good else max(sweep)
        chosen.setdefault(ef, []).append(target)
    return chosen


def timed(
    searcher: Searcher, ef: int | None, queries: np.ndarray, server: list[int]
) -> dict[str, Any]:
    """q/s, p50/p99 and server CPU per query at each concurrency, one client per thread."""
    runs: dict[str, Any] = {}
    for conc in CONCURRENCIES:
        runner = searcher(ef)

        def make(w: int, runner: Any = runner) -> Callable[[Any], int]:
            ask = runner(w)

            def one(q: Any) -> int:
                ask(q)
                return 1

            return one

        before = procstat.cpu_seconds(server) if server else 0.0
        result = run_concurrent(conc, list(queries), make)
        spent = procstat.cpu_seconds(server) - before if server else None
        runs[f"c{conc}"] = {
            **dataclasses.asdict(result),
            "server_cpu_ms_per_q": None if spent is None else spent / len(queries) * 1000,
        }
    return runs


def sweep_and_time(
    figures: Figures,
    searcher: Searcher,
    queries: np.ndarray,
    truth: np.ndarray,
    server: list[int],
    exact_queries: int,
    ef_values: Sequence[int] = EF_SWEEP,
    exact: bool = True,
    extra: Callable[[Point], None] | None = None,
) -> None:
    """Fill ``figures.sweep`` and ``figures.points``; ``extra`` adds runs (wrk) per point."""
    for ef in ef_values:
        figures.sweep[ef] = recall(searcher, ef, queries, truth)
        print(f"  {figures.system}: ef_search={ef} recall@10={figures.sweep[ef]:.4f}", flush=True)
        if figures.sweep[ef] >= 0.999:
            break  # higher ef only costs time
    for ef, targets in sorted(choose(figures.sweep).items()):
        point = Point(f"hnsw ef={ef}", ef, figures.sweep[ef], targets)
        point.runs = timed(searcher, ef, queries, server)
        figures.points.append(point)
        if extra:
            extra(point)
    if exact:
        few, few_truth = queries[:exact_queries], truth[:exact_queries]
        point = Point("exact", None, recall(searcher, None, few, few_truth))
        point.runs = timed(searcher, None, few, server)
        figures.points.append(point)
        if extra:
            extra(point)


def settle(pids: list[int], budget_s: float, window_s: float = 0.5) -> float:
    """Wait until the trees use under 5 % of a core over ``window_s`` (background
    indexing has finished); return the seconds until the work ended: the start of the
    first idle window, so within ``window_s`` of the truth."""
    started = time.perf_counter()
    while time.perf_counter() - started < budget_s:
        mark = time.perf_counter()
        before = procstat.cpu_seconds(pids)
        time.sleep(window_s)
        if procstat.cpu_seconds(pids) - before < 0.05 * window_s:
            return mark - started
    return time.perf_counter() - started
