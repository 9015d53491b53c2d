"""Benchmark results as a markdown report and a PNG chart."""

from __future__ import annotations

from typing import Any

from benchmarks.png_chart import Bar, Panel, encode_png, render
from benchmarks.timing import Throughput

DEFAULT_EF = 64


def _t(figures: dict[str, Any], key: str) -> Throughput:
    value = figures.get(key)
    return value if isinstance(value, Throughput) else Throughput(0.0, 0.0, 0.0)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def query_table(baseline: dict[str, Any], service: dict[str, Any]) -> list[str]:
    lines = [
        "| config | engine | recall@10 | qps c1 | p50 c1 ms | p99 c1 ms | qps c16 | p50 c16 ms "
        "| p99 c16 ms | batched qps c1 | batched qps c16 | upserts/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config in baseline:
        for engine, figures in (("raw FAISS", baseline[config]), ("service", service.get(config))):
            if figures is None:
                lines.append(f"| {config} | {engine} | skipped | | | | | | | | | |")
                continue
            c1, c16 = _t(figures, "single_c1"), _t(figures, "single_c16")
            b1, b16 = _t(figures, "batched_c1"), _t(figures, "batched_c16")
            lines.append(
                f"| {config} | {engine} | {figures['recall']:.4f} | {c1.qps:,.0f} "
                f"| {c1.p50_ms:.2f} | {c1.p99_ms:.2f} | {c16.qps:,.0f} | {c16.p50_ms:.2f} "
                f"| {c16.p99_ms:.2f} | {b1.qps:,.0f} | {b16.qps:,.0f} "
                f"| {figures['upserts_per_s']:,.0f} |"
            )
    return lines


def ratio_table(baseline: dict[str, Any], service: dict[str, Any]) -> list[str]:
    lines = [
        "Service over raw FAISS. The c16 ratio compares the service at concurrency 16 with "
        "raw FAISS single-threaded at concurrency 1 (the issue's target).",
        "",
        "| config | recall | qps c1 | qps c16 vs FAISS c1 | qps c16 vs FAISS c16 "
        "| batched c1 | batched c16 | p50 c1 delta ms | upserts/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config, base in baseline.items():
        svc = service.get(config)
        if svc is None:
            continue
        bc1, sc1, sc16 = _t(base, "single_c1"), _t(svc, "single_c1"), _t(svc, "single_c16")
        lines.append(
            f"| {config} | {_ratio(svc['recall'], base['recall'])} | {_ratio(sc1.qps, bc1.qps)} "
            f"| {_ratio(sc16.qps, bc1.qps)} | {_ratio(sc16.qps, _t(base, 'single_c16').qps)} "
            f"| {_ratio(_t(svc, 'batched_c1').qps, _t(base, 'batched_c1').qps)} "
            f"| {_ratio(_t(svc, 'batched_c16').qps, _t(base, 'batched_c16').qps)} "
            f"| {sc1.p50_ms - bc1.p50_ms:+.2f} "
            f"| {_ratio(svc['upserts_per_s'], base['upserts_per_s'])} |"
        )
    return lines


def targets(baseline: dict[str, Any], service: dict[str, Any]) -> list[str]:
    """The issue's performance targets, each marked met or missed."""
    checks: list[tuple[str, bool]] = []
    flat_b, flat_s = baseline.get("flat"), service.get("flat")
    if flat_b and flat_s:
        ratio = _t(flat_s, "single_c1").qps / max(_t(flat_b, "single_c1").qps, 1e-9)
        checks.append((f"flat qps c1 within 20 % of raw FAISS ({ratio:.2f}x)", ratio >= 0.8))
        ups = flat_s["upserts_per_s"]
        checks.append((f"upserts via values_b64 >= 20,000/s ({ups:,.0f}/s)", ups >= 20_000))
    hnsw = f"hnsw ef={DEFAULT_EF}"
    if hnsw in service:
        base, svc = baseline[hnsw], service[hnsw]
        c16 = _t(svc, "single_c16").qps / max(_t(base, "single_c1").qps, 1e-9)
        delta = _t(svc, "single_c1").p50_ms - _t(base, "single_c1").p50_ms
        checks += [
            (f"hnsw recall@10 >= 0.95 at ef_search={DEFAULT_EF} ({svc['recall']:.4f})",
             svc["recall"] >= 0.95),
            (f"hnsw qps c16 >= 75 % of raw FAISS single-thread ({c16:.2f}x)", c16 >= 0.75),
            (f"hnsw p50 c1 <= raw FAISS + 1 ms ({delta:+.2f} ms)", delta <= 1.0),
        ]  # fmt: skip
    return [f"- [{'x' if ok else ' '}] {what}" for what, ok in checks]


def tenancy_lines(t: dict[str, Any]) -> list[str]:
    cold, warm = t["cold_load"], t["warm_query"]
    quiet, busy = t["hot_quiet"], t["hot_under_churn"]
    return [
        f"{t['tenants']:,} tenants x {t['vectors_per_tenant']} vectors (dim {t['dim']}) on one "
        f"worker; set up in {t['setup_s']:.0f} s.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| worker RSS before / after | {t['worker_rss_mb_before']:.0f} MiB / "
        f"{t['worker_rss_mb_after']:.0f} MiB |",
        f"| memory per idle tenant | {t['kib_per_idle_tenant']:.1f} KiB |",
        f"| cold load (first query after restart) p50 / p99 | {cold.p50_ms:.1f} / "
        f"{cold.p99_ms:.1f} ms |",
        f"| warm query p50 / p99 | {warm.p50_ms:.1f} / {warm.p99_ms:.1f} ms |",
        f"| hot tenant alone p50 / p99 | {quiet.p50_ms:.2f} / {quiet.p99_ms:.2f} ms |",
        f"| hot tenant while others churn p50 / p99 | {busy.p50_ms:.2f} / {busy.p99_ms:.2f} ms "
        f"({t['churn_requests']:,} churn rounds) |",
    ]


def markdown(meta: dict[str, Any], baseline: dict[str, Any], service: dict[str, Any],
             notes: list[str], tenancy: dict[str, Any] | None) -> str:  # fmt: skip
    lines = [
        f"# VectorPanda benchmark — {meta['when']}",
        "",
        f"Data: {meta['n']:,} x {meta['dim']} float32 Gaussian mixture ({meta['clusters']} "
        f"clusters), {meta['queries']:,} held-out queries, exact top-10 by L2. Batches of "
        f"{meta['batch']} queries. Machine: {meta['machine']}. Service: `vectorpanda up` with "
        f"{meta['workers']} worker(s), over HTTP through the SDK.",
        "",
        "## Queries and upserts",
        "",
        *query_table(baseline, service),
        "",
        "## Ratios",
        "",
        *ratio_table(baseline, service),
        "",
        "## Targets (issue 4)",
        "",
        *targets(baseline, service),
    ]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    if tenancy:
        lines += ["", "## Multi-tenancy", "", *tenancy_lines(tenancy)]
    return "\n".join(lines) + "\n"


def chart(meta: dict[str, Any], baseline: dict[str, Any], service: dict[str, Any]) -> bytes:
    panels = []
    for key, title in (
        ("single_c1", "QUERIES/S, SINGLE, CONCURRENCY 1"),
        ("single_c16", "QUERIES/S, SINGLE, CONCURRENCY 16"),
        ("batched_c16", "QUERIES/S, BATCHED, CONCURRENCY 16"),
    ):
        bars = []
        for config in baseline:
            for series, (engine, figures) in enumerate(
                (("FAISS", baseline[config]), ("HTTP", service.get(config)))
            ):
                if figures is not None:
                    qps = _t(figures, key).qps
                    bars.append(Bar(f"{config} {engine}", qps, f"{qps:,.0f}", series))
        panels.append(Panel(title, bars))
    recall = [
        Bar(f"{c} {e}", f["recall"], f"{f['recall']:.3f}", s)
        for c in baseline
        for s, (e, f) in enumerate((("FAISS", baseline[c]), ("HTTP", service.get(c))))
        if f is not None
    ]
    panels.append(Panel("RECALL@10", recall))
    title = f"VECTORPANDA VS RAW FAISS: {meta['n']:,} X {meta['dim']}"
    return encode_png(render(title, panels))
