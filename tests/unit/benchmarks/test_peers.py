"""The peers benchmark's pure parts: corpus extraction, pgvector's COPY format, wrk's
output, the choice of equal-recall points and the report."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peers import pace, run, wrk
from benchmarks.peers.corpus import page_sentences
from benchmarks.peers.measure import EF_SWEEP, Figures, Point, choose, recall_at_k
from benchmarks.peers.pgvector_peer import copy_binary
from benchmarks.peers.report import comparison, markdown, point_for, wrk_errors

# A run's description, as run.main writes it (without "when", the pace and the size).
META = {"data": "d", "hnsw_m": 16, "ef_construction": 100, "machine": "m",
        "command": "c", "wrk_seconds": 3, "exact_queries": 200}  # fmt: skip

ROFF = r""".\" a comment that is not text
.TH LS 1
.SH DESCRIPTION
List information about the \fBFILEs\fR in the current directory by default.
Sort entries alphabetically if none of the other options is given.
.PP
.B \-a
short
.SH SEE ALSO
The full documentation for ls is maintained as a Texinfo manual here.
"""


def test_sentences_come_from_running_text_without_roff_markup() -> None:
    found = list(page_sentences(ROFF))
    assert found == [
        "List information about the FILEs in the current directory by default.",
        "Sort entries alphabetically if none of the other options is given.",
        "The full documentation for ls is maintained as a Texinfo manual here.",
    ]


def test_copy_binary_is_postgres_binary_copy_with_pgvector_values() -> None:
    vectors = np.array([[1.0, -2.5], [0.25, 3.0]], dtype=np.float32)
    payload = copy_binary(vectors)
    assert payload.startswith(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    assert payload.endswith(struct.pack(">h", -1))
    body = payload[19:-2]
    row = (
        struct.pack(">hii", 2, 4, 1) + struct.pack(">ihh", 12, 2, 0) + struct.pack(">ff", 0.25, 3.0)
    )
    assert body[len(body) // 2 :] == row
    assert len(body) == 2 * len(row)


def test_wrk_output_is_parsed_with_units_and_errors() -> None:
    output = """Running 3s test @ http://127.0.0.1:1/v1/collections/x/query
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     99%    1.50s
  2400 requests in 3.00s, 1.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:    800.25
"""
    parsed = wrk.parse(output)
    assert parsed["qps"] == pytest.approx(800.25 * 2393 / 2400)  # the 7 refusals left out
    assert parsed["p50_ms"] == 0.812
    assert parsed["p99_ms"] == 1500.0
    assert parsed["requests"] == 2400
    assert parsed["errors"] == 7
    assert parsed["error_kinds"] == {"non-2xx": 7}


def test_wrk_socket_errors_are_counted_by_kind_and_shown_in_the_report() -> None:
    output = """  Latency Distribution
     50%    2.00ms
     99%    5.00ms
  1000 requests in 5.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 18
  Non-2xx or 3xx responses: 5
Requests/sec:    200.00
"""
    parsed = wrk.parse(output)
    assert parsed["error_kinds"] == {"read": 2, "timeout": 18, "non-2xx": 5}
    assert parsed["errors"] == 25
    assert parsed["qps"] == pytest.approx(200.0 * 975 / 1000)
    assert wrk_errors(parsed) == " (25 errors: read 2, timeout 18, non-2xx 5)"
    assert wrk_errors({"errors": 3}) == " (3 errors)"  # a results file from before the kinds
    assert wrk_errors({"errors": 0, "error_kinds": {}}) == ""


def test_the_smallest_ef_reaching_each_target_is_chosen() -> None:
    sweep = {10: 0.90, 16: 0.951, 24: 0.97, 32: 0.991, 48: 0.995}
    assert choose(sweep) == {16: [0.95], 32: [0.99]}
    assert choose({10: 0.96, 16: 0.98}) == {10: [0.95], 16: [0.99]}  # 0.99 never reached
    assert choose({10: 0.995}) == {10: [0.95, 0.99]}


def test_no_step_of_the_sweep_overshoots_by_more_than_a_quarter() -> None:
    """How far past a recall target a system may be timed: at most 25 % more ef_search
    than the step below, from 16 to 192."""
    assert list(EF_SWEEP) == sorted(set(EF_SWEEP))
    steps = [(a, b) for a, b in itertools.pairwise(EF_SWEEP) if 16 <= a < 192]
    assert steps and all(b <= 1.25 * a for a, b in steps), steps


def test_recall_counts_the_true_neighbours_found() -> None:
    truth = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    assert recall_at_k([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], truth) == 1.0
    assert recall_at_k([[1, 2, 3, 4, 5, 0, 0, 0, 0, 0]], truth) == 0.5


def _system(name: str, qps16: float, ef: int | None = 16) -> Figures:
    run = {"qps": qps16, "p50_ms": 1.0, "p99_ms": 2.0, "server_cpu_ms_per_q": 0.5}
    point = Point(f"hnsw ef={ef}", ef, 0.97, [0.95], {"c1": run, "c16": run})
    return Figures(name, 1000.0, 10.0, 5.0, 100.0, {16: 0.97}, [point])


def test_ratios_are_to_the_fastest_other_peer_and_to_faiss() -> None:
    systems = [
        _system("raw FAISS (in-process)", 4000.0),
        _system("VectorPanda (SDK)", 600.0),
        _system("PostgreSQL + pgvector (psycopg)", 400.0),
        _system("Chroma", 200.0),
    ]
    table = comparison(systems, 0.95)
    vectorpanda = next(line for line in table.splitlines() if line.startswith("| VectorPanda"))
    assert vectorpanda.endswith("| 1.50x | 0.15x |")
    assert point_for(systems[0], 0.99) is None
    meta = {**META, "when": "t"}
    text = markdown(meta, systems)
    assert "shared with other engineers" in text
    assert "## HNSW at recall@10 ≥ 0.99" in text


def test_machine_pace_is_probed_and_reported_or_said_missing() -> None:
    taken = pace.probe()
    assert taken["python_mops"] > 0
    assert 0 < taken["round_trip_us"] < 1_000_000
    meta = {**META, "when": "t"}
    systems = [_system("raw FAISS (in-process)", 4000.0)]
    assert "Machine pace" in markdown(meta, systems)
    assert "not measured (a run before the probes existed)" in markdown(meta, systems)
    meta["pace"] = {"start": {"python_mops": 25.0, "round_trip_us": 40.0}, "end": None}
    line = next(x for x in markdown(meta, systems).splitlines() if "Machine pace" in x)
    assert line.endswith("start: Python 25.0 M ops/s, round trip 40 µs.")


def test_only_a_run_of_every_system_becomes_the_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    # the chart needs matplotlib, a bench-only package; what is kept where is under test here
    monkeypatch.setattr(run.report, "chart", lambda meta, systems: b"png")
    meta = {**META, "n": 1000}
    every = [_system(name, 100.0) for name in ("raw FAISS", "VectorPanda", "pgvector", "Chroma")]
    run.write({**meta, "when": "full"}, every, "1k")
    latest = (tmp_path / "peers-1k-latest.md").read_text()
    assert latest == (tmp_path / "peers-1k-full.md").read_text()
    assert "peers-1k-latest.*)" in capsys.readouterr().out

    run.write({**meta, "when": "subset"}, every[:2], "1k")
    assert (tmp_path / "peers-1k-subset.json").exists()
    assert (tmp_path / "peers-1k-latest.md").read_text() == latest
    assert "left as they were" in capsys.readouterr().out


def test_each_server_system_is_paired_with_a_faiss_build_timed_just_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run.pace, "probe", lambda: {"python_mops": 50.0, "round_trip_us": 20.0})
    order: list[str] = []

    def baseline() -> float:
        order.append("faiss build")
        return 8.0

    def measure() -> Figures:
        order.append("system")
        return _system("VectorPanda (SDK)", 600.0)

    figures = run._attempt("VectorPanda", measure, baseline)
    assert order == ["faiss build", "system"]
    assert figures.paired_build_s == 8.0
    faiss = run._attempt("raw FAISS", lambda: _system("raw FAISS (in-process)", 4000.0))
    assert faiss.paired_build_s is None

    def crash() -> Figures:
        raise RuntimeError("the peer crashed")

    failed = run._attempt("Chroma", crash, baseline)
    assert failed.paired_build_s == 8.0 and failed.notes[0].startswith("FAILED")

    # fully indexed in 10.0 s (see _system): as long as FAISS's build at the run's start
    # (its own row, the same figures), 1.25x the 8.0 s of the build just before
    text = markdown({**META, "when": "t"}, [faiss, figures])
    row = next(x for x in text.splitlines() if x.startswith("| VectorPanda (SDK) | 1,000 |"))
    assert "| 10.0 | 1.00x | 8.0 | 1.25x |" in row
    faiss_row = next(x for x in text.splitlines() if x.startswith("| raw FAISS (in-process) | 1,"))
    assert "| 10.0 | 1.00x | — | — |" in faiss_row


def test_memory_is_read_for_each_process_of_a_tree_and_adds_up_to_the_total() -> None:
    import os
    import subprocess
    import sys

    from benchmarks.peers import procstat

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        rows = procstat.each_process_mib([os.getpid()])
        pids = [pid for pid, _, _, _ in rows]
        assert os.getpid() in pids and child.pid in pids
        mine = next(r for r in rows if r[0] == child.pid)
        assert mine[1] == "-c import time; time.sleep(30)"  # the interpreter and -m left out
        assert all(rss > 0 and 0 < pss <= rss for _, _, rss, pss in rows)
        total = procstat.rss_mib([os.getpid()])
        assert abs(sum(rss for _, _, rss, _ in rows) - total) < 0.05 * total
    finally:
        child.kill()
        child.wait()
