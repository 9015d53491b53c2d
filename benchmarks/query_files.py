"""Which of the repo's files one data-plane query runs through, measured rather than read off.

Starts ``vectorpanda up`` with one worker and a profiler in both processes (a
``sitecustomize`` on ``PYTHONPATH`` for this run only: ``sys.setprofile`` records the file
of every Python function called while recording is on; SIGUSR1 starts, SIGUSR2 writes the
set). Loads a small collection, warms it up, then records ``--rounds`` windows around one
SDK query each (binary format, the SDK's default; a window is a few milliseconds) and as
many idle windows of the same length; the client's own calls are recorded in this process.
A file counts when every query window has it; a file an idle window has too is listed
apart (background work such as heartbeats, possibly also on the query's path: read those
by hand).

    .venv/bin/python -m benchmarks.query_files [--rounds 5] [--json]

nginx (TLS, in a fleet) is one more hop and not a Python file; it is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from tests.stack import running_stack
from vectorpanda_client import Client

ROOT = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = """
import json, os, signal, sys, threading

_out = os.environ.get("VP_TRACE_DIR")
if _out:
    _seen = set()
    _on = [False]

    def _profile(frame, event, arg):
        if _on[0] and event == "call":
            _seen.add(frame.f_code.co_filename)

    def _start(signum, frame):
        _seen.clear()
        _on[0] = True
        open(os.path.join(_out, "%d.on" % os.getpid()), "w").close()

    def _stop(signum, frame):
        _on[0] = False
        path = os.path.join(_out, "%d.json" % os.getpid())
        with open(path + ".tmp", "w") as fh:
            json.dump(sorted(_seen), fh)
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.setprofile(_profile)
    threading.setprofile(_profile)
"""


@contextmanager
def recording_here() -> Iterator[set[str]]:
    seen: set[str] = set()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            seen.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def _wait_for(out: Path, pattern: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(list(out.glob(pattern))) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer from every process in {out}")
        time.sleep(0.001)


def window(pids: list[int], out: Path, action: Callable[[], None]) -> dict[int, set[str]]:
    """Record in every process of ``pids`` while ``action`` runs (a few ms round it)."""
    for p in out.iterdir():
        p.unlink()
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    _wait_for(out, "*.on", len(pids))  # each process is recording
    action()
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)
    _wait_for(out, "*.json", len(pids))
    return {pid: set(json.loads((out / f"{pid}.json").read_text())) for pid in pids}


def repo_files(files: set[str]) -> set[str]:
    out = set()
    for f in files:
        path = Path(f)
        if path == Path(__file__).resolve():
            continue
        if path.is_absolute() and path.is_relative_to(ROOT) and ".venv" not in path.parts:
            out.add(str(path.relative_to(ROOT)))
    return out


def third_party(files: set[str]) -> int:
    return len({f for f in files if "site-packages" in f})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2_000, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        hook, traces = Path(tmp) / "hook", Path(tmp) / "traces"
        hook.mkdir()
        traces.mkdir()
        (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
        # heartbeats every 30 s instead of 1 s: the windows are seldom shared with one
        env = {"PYTHONPATH": path, "VP_TRACE_DIR": str(traces), "VP_HEARTBEAT_INTERVAL_S": "30"}
        with running_stack(Path(tmp) / "data", workers=1, **env) as stack:
            assert stack.proc is not None
            coordinator, worker = stack.proc.pid, stack.worker_pids()[0]
            key = stack.new_client("trace", tier="premium")
            with Client(stack.url, key) as client:
                client.create_collection("t", 32, metric="l2")
                docs = client.collection("t")
                docs.upsert([f"v{i}" for i in range(len(data))], data)
                for i in range(20):  # loaded, warm, every lazy import done
                    docs.query(data[i], top_k=5)
                runs: list[dict[str, set[str]]] = []
                idle: list[dict[str, set[str]]] = []
                for i in range(args.rounds):
                    client_side: set[str] = set()

                    def one_query(i: int = i, client_side: set[str] = client_side) -> None:
                        with recording_here() as seen:
                            docs.query(data[100 + i], top_k=5)
                        client_side |= seen

                    started = time.monotonic()
                    traced = window([coordinator, worker], traces, one_query)
                    took = time.monotonic() - started
                    runs.append(
                        {"client": client_side, "coordinator": traced[coordinator],
                         "worker": traced[worker]}
                    )  # fmt: skip
                    time.sleep(0.2)  # the query's tail (request log, metering) is done
                    quiet = window([coordinator, worker], traces, partial(time.sleep, took))
                    idle.append({"coordinator": quiet[coordinator], "worker": quiet[worker]})
    report: dict[str, Any] = {}
    for side in ("client", "coordinator", "worker"):
        always = set.intersection(*(r[side] for r in runs))
        background = set.union(*(w.get(side, set()) for w in idle)) if side != "client" else set()
        report[side] = {
            "repo_files": sorted(repo_files(always - background)),
            "repo_files_also_idle": sorted(repo_files(always & background)),
            "third_party_files": third_party(always),
        }
    total = sum(len(r["repo_files"]) for r in report.values())
    total_with_idle = total + sum(len(r["repo_files_also_idle"]) for r in report.values())
    if args.json:
        print(json.dumps({**report, "total": total, "total_with_idle": total_with_idle}, indent=2))
        return
    for side, r in report.items():
        print(f"{side}: {len(r['repo_files'])} repo files (+{len(r['repo_files_also_idle'])} "
              f"also busy when idle), {r['third_party_files']} third-party files")  # fmt: skip
        for f in r["repo_files"]:
            print(f"  {f}")
        for f in r["repo_files_also_idle"]:
            print(f"  ({f})")
    distinct = len({f for r in report.values() for f in r["repo_files"]})
    print(f"total: {total} repo files on every query's path, {distinct} distinct "
          f"({total_with_idle} with those also busy when idle)")  # fmt: skip


if __name__ == "__main__":
    main()
