"""Noisy neighbours on one worker (issue 12): expensive filters, deadlines, cancellation.

One stack with a single worker, so every tenant shares it. Client A sends the kind of
request that used to take the worker away from everyone (a ``$nin`` of 50,000 strings,
8 at a time); client B's simple queries must keep their latency and never get 503.
Work the coordinator gave up on (deadline passed, client gone) must stop on the worker:
its CPU time, read from /proc, falls to idle within a second.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 8
DEADLINE_S = 3.0  # the coordinator's request deadline in this stack (VP_REQUEST_TIMEOUT_S)
FLOODERS = 8
NOISY_S = 12.0  # how long A floods (the 30 s, shortened to keep `make test` quick)
ALONE_S = 5.0
B_PAUSE_S = 0.02  # B is a modest steady client (under its standard tier's rate)
# The bound on B's p99 is 2x its p99 alone, with the alone figure floored at this
# (so the bound is at least 300 ms). On a loaded 2-core box (load average 10-16 while
# this was written, from other work) a 15 ms baseline is mostly scheduler noise, and
# every process A keeps busy (coordinator, worker) waits longer for a core whenever B
# needs it: measured 83-250 ms with A flooding. Before issue 12, B's requests waited
# seconds behind A's and got 503 at the deadline; that is what this test keeps out.
# `python -m benchmarks.noisy_split` shows where the rest goes: B slows as much with A
# on another worker, B's /healthz (no worker) slows too, and a process that only burns
# CPU barely slows B. Each of A's requests costs the shared coordinator's event loop
# about 5 ms of CPU (parsing and bounding 0.55 MB of filter, sending it on), which a
# busy host stretches; the worker's GIL switch interval (5, 1, 0.5 ms) changed nothing
# beyond the noise. With one filtered request of a client in flight (the default
# since; it was two) B's p99 with A was 59-107 ms in five runs, p50 16-19 ms; the
# floor stays, as a loaded CI box has been seen to double such figures.
P99_FLOOR_S = 0.15
# A worker doing nothing but heartbeats uses well under this much CPU in one second.
IDLE_CPU_S = 0.1


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("vp-noisy")
    with running_stack(data_dir, workers=1, VP_REQUEST_TIMEOUT_S=str(DEADLINE_S)) as stack:
        yield stack


def _worker_pid(stack: Stack) -> int:
    for pid in stack.worker_pids():
        if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("no worker process")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def _cpu_between(pid: int, start: float, end: float) -> float:
    """The worker's CPU seconds from monotonic time ``start`` to ``end`` (waits for both)."""
    time.sleep(max(0.0, start - time.monotonic()))
    before = _cpu_seconds(pid)
    time.sleep(max(0.0, end - time.monotonic()))
    return _cpu_seconds(pid) - before


def _collection(client: httpx.Client, name: str, rows: list[dict[str, object]]) -> None:
    r = client.post("/v1/collections", json={"name": name, "dimension": DIM, "metric": "l2"})
    assert r.status_code == 201, r.text
    for start in range(0, len(rows), 1000):
        r = client.post(
            f"/v1/collections/{name}/upsert", json={"vectors": rows[start : start + 1000]}
        )
        assert r.status_code == 200, r.text


def _rows(count: int, meta: object) -> list[dict[str, object]]:
    rng = np.random.default_rng(count)
    return [
        {"id": f"v{i}", "values": rng.standard_normal(DIM).tolist(),
         "metadata": meta(i) if callable(meta) else meta}
        for i in range(count)
    ]  # fmt: skip


def _p99(latencies: list[float]) -> float:
    return float(np.percentile(latencies, 99))


def _simple_queries(client: httpx.Client, seconds: float) -> tuple[list[float], Counter[int]]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    body = {"vector": [0.5] * DIM, "top_k": 5}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        r = client.post("/v1/collections/quiet/query", json=body)
        latencies.append(time.perf_counter() - started)
        statuses[r.status_code] += 1
        time.sleep(B_PAUSE_S)
    return latencies, statuses


def _flood(url: str, key: str, flooding: Any, stop: Any, counts: Any) -> None:
    """Client A: FLOODERS senders of expensive filtered queries until ``stop``."""
    strings = [f"x{i:07d}" for i in range(50_000)]
    bodies = [
        orjson.dumps({"vector": [0.1] * DIM, "top_k": 10, "filter": doc})
        for doc in (
            {"color": {"$nin": strings}},
            {"color": {"$in": strings}, "n": {"$gte": 0}},
            {"$or": [{"color": {"$nin": strings}}, {"n": {"$in": list(range(10_000))}}]},
        )
    ]
    statuses: Counter[int] = Counter()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    def send(turn: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                body = bodies[turn % len(bodies)]
                turn += 1
                r = client.post("/v1/collections/noisy/query", content=body)
                statuses[r.status_code] += 1
                flooding.set()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(FLOODERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts.put(dict(statuses))


def test_a_tenant_flooding_expensive_filters_leaves_its_neighbour_alone(
    one_worker: Stack,
) -> None:
    a_key = one_worker.new_client("noisy", tier="premium")
    b_key = one_worker.new_client("quiet", tier="standard")
    with one_worker.client(a_key) as a, one_worker.client(b_key) as b:
        _collection(a, "noisy", _rows(200, lambda i: {"color": f"c{i % 7}", "n": i}))
        _collection(b, "quiet", _rows(200, lambda i: {"n": i}))
        assert b.post("/v1/collections/quiet/query", json={"vector": [0.5] * DIM}).status_code
        alone, alone_statuses = _simple_queries(b, ALONE_S)
        assert set(alone_statuses) == {200}, alone_statuses

        # A runs in a process of its own, as another client would: its 8 senders must
        # not compete with B's for this process's GIL, or B's figures would measure that.
        spawn = multiprocessing.get_context("spawn")
        flooding, stop = spawn.Event(), spawn.Event()
        counts: multiprocessing.Queue[dict[int, int]] = spawn.Queue()
        flood = spawn.Process(target=_flood, args=(one_worker.url, a_key, flooding, stop, counts))
        flood.start()
        try:
            assert flooding.wait(30), "A's flood did not start"
            time.sleep(1.0)  # A's load is up before B measures
            noisy, noisy_statuses = _simple_queries(b, NOISY_S - 1.0)
        finally:
            stop.set()
            a_statuses = Counter(counts.get(timeout=60))
            flood.join(30)

    bound = 2 * max(_p99(alone), P99_FLOOR_S)
    report = (
        f"B p50 alone {np.median(alone) * 1000:.1f} ms, with A {np.median(noisy) * 1000:.1f} ms; "
        f"B p99 alone {_p99(alone) * 1000:.1f} ms ({len(alone)} queries), with A "
        f"{_p99(noisy) * 1000:.1f} ms ({len(noisy)} queries), bound {bound * 1000:.1f} ms; "
        f"A answered {dict(a_statuses)}"
    )
    print(report)
    assert set(noisy_statuses) == {200}, f"B got {dict(noisy_statuses)}; {report}"
    assert a_statuses[200] >= 8 * NOISY_S / 2, f"A was not really sending load: {report}"
    assert _p99(noisy) <= bound, report


def test_abandoned_work_stops_using_the_worker_within_a_second(one_worker: Stack) -> None:
    key = one_worker.new_client("heavy", tier="premium")
    tags = [f"t{j:03d}" for j in range(400)]
    # 200 range conditions over 2,000 rows of 400 tags: minutes of work if run to the end.
    body = {
        "vector": [0.0] * DIM,
        "top_k": 5,
        "filter": {"$or": [{"tags": {"$gt": f"z{i}"}} for i in range(200)]},
    }
    pid = _worker_pid(one_worker)
    with one_worker.client(key) as client:
        _collection(client, "heavy", _rows(2000, {"tags": tags}))
        started = time.monotonic()
        answers: list[httpx.Response] = []
        sender = threading.Thread(
            target=lambda: answers.append(client.post("/v1/collections/heavy/query", json=body))
        )
        sender.start()
        busy = _cpu_between(pid, started + 0.5, started + 2.5)
        sender.join()
        answered = time.monotonic()
    assert answers[0].status_code == 503, answers[0].text
    assert answered - started == pytest.approx(DEADLINE_S, abs=1.5)
    idle = _cpu_between(pid, answered + 1.0, answered + 2.0)
    print(f"worker CPU: {busy:.2f} s over 2 s while working, {idle:.2f} s in the second after")
    # Busy is measured over 2 s, idle over 1 s; on a loaded box one busy thread gets a
    # fraction of a core, so "still working" is judged against what it got while busy.
    assert busy > 2 * IDLE_CPU_S, f"the query did not keep the worker busy ({busy:.2f} s)"
    assert idle < min(IDLE_CPU_S, busy / 4), (
        f"worker still used {idle:.2f} s CPU a second after the deadline (busy: {busy:.2f} s)"
    )

    # A client that gives up before the deadline: its disconnect stops the work too.
    started = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        one_worker.client(key).post("/v1/collections/heavy/query", json=body, timeout=0.8)
    gone = time.monotonic()
    idle = _cpu_between(pid, gone + 1.0, gone + 2.0)
    print(f"worker CPU in the second after the client left: {idle:.2f} s")
    assert gone + 2.0 < started + DEADLINE_S + 0.5  # measured before the deadline could act
    assert idle < min(IDLE_CPU_S, busy / 4), (
        f"worker still used {idle:.2f} s CPU after the client left (busy: {busy:.2f} s)"
    )
