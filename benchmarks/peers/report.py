"""The peers benchmark's results: markdown tables and a PNG chart (matplotlib)."""

from __future__ import annotations

import io
from typing import Any

from benchmarks.peers import pace
from benchmarks.peers.measure import TARGETS, Figures, Point

FAISS = "raw FAISS"
VECTORPANDA = "VectorPanda"
NOISE = (
    "The machine (2 cores) is shared with other engineers running tests while this ran, "
    "so every figure is noisy; compare systems within this one run, not across runs."
)


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:
        return "—"
    return f"{value:,.{digits}f}"


def _pace(meta: dict[str, Any]) -> str:
    taken = meta.get("pace") or {}
    if not taken:
        return "not measured (a run before the probes existed)."
    return pace.describe(taken.get("start"), taken.get("end")) + "."


def _run(point: Point, key: str) -> dict[str, Any]:
    return point.runs.get(key) or {}


def wrk_errors(run: dict[str, Any]) -> str:
    """The end of a wrk run's q/s cell: ``(20 errors: read 2, timeout 18)`` after a
    space, nothing without errors, the count alone from a results file made before the
    kinds were kept."""
    if not run.get("errors"):
        return ""
    kinds = run.get("error_kinds") or {}
    named = ": " + ", ".join(f"{kind} {count}" for kind, count in kinds.items()) if kinds else ""
    return f" ({run['errors']} errors{named})"


def point_for(figures: Figures, target: float | None) -> Point | None:
    """The system's point for a recall target (None: exact search)."""
    for point in figures.points:
        if target is None and point.ef is None:
            return point
        if target is not None and target in point.reaches:
            return point
    return None


def _qps(point: Point | None, key: str = "c16") -> float:
    return float(_run(point, key).get("qps") or 0.0) if point else 0.0


def comparison(systems: list[Figures], target: float | None) -> str:
    rows = [(s, point_for(s, target)) for s in systems]
    faiss = next((p for s, p in rows if s.system.startswith(FAISS)), None)
    # FAISS's best: its 16 Python threads can be slower than one on a busy box.
    floor = max(_qps(faiss, "c1"), _qps(faiss, "c16"))
    peers = [_qps(p) for s, p in rows if not s.system.startswith((FAISS, VECTORPANDA))]
    fastest = max(peers, default=0.0)
    head = (
        "| system | point | recall@10 | q/s c1 | p50 c1 ms | p99 c1 ms | q/s c16 | p50 c16 ms "
        "| p99 c16 ms | server CPU ms/q (c1 / c16) | wrk q/s c1 / c16 | wrk p50 c16 ms "
        "| wrk server CPU ms/q (c16) | c16 ÷ fastest peer | c16 ÷ FAISS best |"
    )
    lines = [head, "|" + "---|" * 15]
    for system, point in rows:
        if point is None:
            lines.append(f"| {system.system} | not measured |" + " |" * 13)
            continue
        c1, c16 = _run(point, "c1"), _run(point, "c16")
        w1, w16 = _run(point, "wrk c1"), _run(point, "wrk c16")
        reached = "" if target is None or point.recall >= target else " (target not reached)"
        wrk_qps = f"{_f(w1.get('qps'))} / {_f(w16.get('qps'))}" if w16 else "—"
        wrk_qps += wrk_errors(w16)
        cpu = f"{_f(c1.get('server_cpu_ms_per_q'), 2)} / {_f(c16.get('server_cpu_ms_per_q'), 2)}"
        lines.append(
            f"| {system.system} | {point.mode}{reached} | {point.recall:.4f} "
            f"| {_f(c1.get('qps'))} | {_f(c1.get('p50_ms'), 2)} | {_f(c1.get('p99_ms'), 2)} "
            f"| {_f(c16.get('qps'))} | {_f(c16.get('p50_ms'), 2)} | {_f(c16.get('p99_ms'), 2)} "
            f"| {cpu} | {wrk_qps} | {_f(w16.get('p50_ms'), 2)} "
            f"| {_f(w16.get('server_cpu_ms_per_q'), 2)} "
            f"| {_ratio(_qps(point), fastest)} | {_ratio(_qps(point), floor)} |"
        )
    return "\n".join(lines)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 and value > 0 else "—"


def ingest(systems: list[Figures]) -> str:
    faiss = next((s for s in systems if s.system.startswith(FAISS)), None)
    lines = [
        "| system | ingest vectors/s | fully indexed s | ÷ FAISS build | FAISS build just "
        "before s | ÷ it | server CPU to index s | ÷ FAISS build CPU | memory MiB (PSS) "
        "| memory MiB (RSS) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in systems:
        build = _ratio(s.indexed_s or 0.0, faiss.indexed_s or 0.0) if faiss else "—"
        paired = _ratio(s.indexed_s or 0.0, s.paired_build_s or 0.0)
        cpu = _ratio(s.indexed_cpu_s or 0.0, faiss.indexed_cpu_s or 0.0) if faiss else "—"
        lines.append(
            f"| {s.system} | {_f(s.ingest_vps)} | {_f(s.indexed_s, 1)} | {build} "
            f"| {_f(s.paired_build_s, 1)} | {paired} "
            f"| {_f(s.indexed_cpu_s, 1)} | {cpu} | {_f(s.memory_mib)} | {_f(s.rss_mib)} |"
        )
    return "\n".join(lines)


def sweep(systems: list[Figures]) -> str:
    efs = sorted({ef for s in systems for ef in s.sweep})
    lines = ["| ef_search | " + " | ".join(s.system for s in systems) + " |"]
    lines.append("|---|" + "---|" * len(systems))
    for ef in efs:
        cells = [f"{s.sweep[ef]:.4f}" if ef in s.sweep else "" for s in systems]
        lines.append(f"| {ef} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(meta: dict[str, Any], systems: list[Figures]) -> str:
    parts = [
        f"# VectorPanda against its peers — {meta['when']}",
        "",
        f"- Data: {meta['data']}",
        f"- Top 10 by L2; HNSW M={meta['hnsw_m']}, ef_construction={meta['ef_construction']} "
        "everywhere; each HNSW system at the smallest ef_search reaching the recall target.",
        f"- Machine: {meta['machine']}. Command: `{meta['command']}`",
        f"- {NOISE}",
        f"- Machine pace (`benchmarks/peers/pace.py`: small Python operations per second, "
        "and one message's round trip between two processes over loopback TCP), "
        f"{_pace(meta)}",
        "- c1 / c16: the system's own Python client, 1 or 16 threads (one client each), "
        "one query per request; wrk: a fixed request body (the first query), "
        f"{meta['wrk_seconds']} s per run, from the same machine; its q/s and CPU per "
        "query count answered requests only (errors, such as a tier's rate limit, are "
        "shown beside them).",
        "- Server CPU per query: user + system CPU of the server's processes and their "
        "children (/proc/<pid>/stat) over the run, divided by the queries answered; for raw "
        "FAISS, the benchmark process itself.",
        "- ÷ FAISS build: fully indexed against raw FAISS's build at the start of the run; "
        "÷ it: against raw FAISS's build of the same vectors timed just before the system "
        "ran (the machine's speed drifts during a run, so the nearer baseline).",
        "",
    ]
    for target in TARGETS:
        parts += [f"## HNSW at recall@10 ≥ {target}", "", comparison(systems, target), ""]
    parts += [f"## Exact search ({meta['exact_queries']} queries)", ""]
    parts += [comparison(systems, None), ""]
    parts += ["## Ingest and memory", "", ingest(systems), ""]
    parts += ["## Recall@10 by ef_search", "", sweep(systems), "", "## Notes", ""]
    parts += [f"- {s.system}: {note}" for s in systems for note in s.notes]
    return "\n".join(parts) + "\n"


def chart(meta: dict[str, Any], systems: list[Figures]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases: list[tuple[str, float | None]] = [(f"recall ≥ {t}", t) for t in TARGETS]
    cases.append(("exact", None))
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4.8), sharey=False)
    series = [("c1", "client c1"), ("c16", "client c16"), ("wrk c16", "wrk c16")]
    for ax, (title, target) in zip(axes, cases, strict=True):
        names = [s.system.split(" (")[0] for s in systems]
        width = 0.27
        for i, (key, label) in enumerate(series):
            values = [_qps(point_for(s, target), key) for s in systems]
            xs = [x + (i - 1) * width for x in range(len(systems))]
            bars = ax.bar(xs, values, width, label=label)
            ax.bar_label(bars, labels=[f"{v:.0f}" if v else "" for v in values], fontsize=6)
        ax.set_xticks(range(len(systems)), names, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("queries/s")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Peers, {meta['n']:,} x 384 real embeddings, {meta['when']} (noisy, shared box)")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
