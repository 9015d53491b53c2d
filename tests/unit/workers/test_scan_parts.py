"""A long exact scan in parts, on spare cores while no other read runs: same answers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers import flat_index, maintenance
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.flat_index import BLAS_BATCH_MIN, ScanHelpers, exact_search, part_starts
from workers.maintenance import Activity, Maintenance, runnable_tasks
from workers.protocol import ErrorCode, decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers.tenant_store import TenantStore
from workers.work_budget import WorkBudget

from .conftest import SMALL_WAL

METRICS = ["l2", "ip"]
ROWS, DIM = 1000, 16


def _data(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((ROWS, DIM), dtype=np.float32)
    return base, rng.standard_normal((BLAS_BATCH_MIN + 5, DIM), dtype=np.float32)


def _brute_force(base: np.ndarray, queries: np.ndarray, metric: str, k: int) -> np.ndarray:
    b, q = base.astype(np.float64), queries.astype(np.float64)
    keys = ((q[:, None, :] - b[None, :, :]) ** 2).sum(axis=2) if metric == "l2" else -(q @ b.T)
    return np.argsort(keys, axis=1, kind="stable")[:, :k]


def test_a_scan_is_cut_into_equal_parts_by_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    assert part_starts(100_000, 384) == list(range(0, 100_000, 11_112))  # 9 parts
    assert part_starts(20_000, 384) == [0]  # under two parts' worth: one scan
    assert part_starts(0, 384) == [0]
    monkeypatch.setattr(flat_index, "PART_FLOATS", 100 * DIM)
    assert part_starts(ROWS, DIM) == list(range(0, ROWS, 100))
    assert part_starts(250, DIM) == [0, 125]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("queries", [1, 3, BLAS_BATCH_MIN + 5])
@pytest.mark.parametrize("helpers", ["alone", "spare cores"])
def test_a_scan_in_parts_answers_as_one_scan(
    monkeypatch: pytest.MonkeyPatch, metric: str, queries: int, helpers: str
) -> None:
    base, asked = _data()
    asked = asked[:queries]
    whole_scores, whole_rows = exact_search(base, asked, 10, metric)
    monkeypatch.setattr(flat_index, "PART_FLOATS", 64 * DIM)  # 15 parts of 67 rows
    scan = ScanHelpers(2, lambda: True) if helpers == "spare cores" else None
    scores, rows = exact_search(base, asked, 10, metric, scan)
    assert rows.tolist() == whole_rows.tolist() == _brute_force(base, asked, metric, 10).tolist()
    np.testing.assert_allclose(scores, whole_scores, rtol=1e-6, atol=1e-6)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    # top_k past the row count: every row once, best first
    all_scores, all_rows = exact_search(base, asked, ROWS + 5, metric, scan)
    assert all_rows.shape == (queries, ROWS)
    assert all(sorted(row) == list(range(ROWS)) for row in all_rows.tolist())
    assert all_rows[:, :10].tolist() == whole_rows.tolist()
    steps = np.diff(all_scores, axis=1)
    assert bool((steps >= 0).all() if metric == "l2" else (steps <= 0).all())


def test_equal_scores_keep_the_lower_row_first(monkeypatch: pytest.MonkeyPatch) -> None:
    base = np.tile(np.eye(DIM, dtype=np.float32)[:4], (ROWS // 4, 1))  # 4 vectors, 250 times
    monkeypatch.setattr(flat_index, "PART_FLOATS", 64 * DIM)
    _, rows = exact_search(base, base[:1], 5, "l2", ScanHelpers(2, lambda: True))
    assert rows.tolist() == [[0, 4, 8, 12, 16]]


def test_helpers_take_parts_while_the_cores_are_spare() -> None:
    both_running = threading.Barrier(2, timeout=30)
    threads: dict[int, str] = {}

    def part(i: int) -> int:
        threads[i] = threading.current_thread().name
        if i < 2:
            both_running.wait()  # passes only if two threads scan parts at once
        return i * i

    assert ScanHelpers(2, lambda: True).run(6, part) == [i * i for i in range(6)]
    assert threading.current_thread().name in threads.values()
    assert any(name.startswith("scan") for name in threads.values())


def test_no_helper_takes_a_part_while_another_read_runs() -> None:
    threads: set[str] = set()

    def part(i: int) -> int:
        threads.add(threading.current_thread().name)
        return i

    assert ScanHelpers(2, lambda: False).run(8, part) == list(range(8))
    assert threads == {threading.current_thread().name}


def test_a_helper_stops_taking_parts_once_another_read_arrives() -> None:
    scanner = threading.current_thread().name
    spare = threading.Event()
    spare.set()
    helper_began = threading.Event()
    by_helper: list[int] = []

    def part(i: int) -> int:
        if threading.current_thread().name == scanner:
            assert helper_began.wait(30)  # the scanning thread waits for the helper's part
        else:
            by_helper.append(i)
            spare.clear()  # another read arrives while the helper scans
            helper_began.set()
        return i

    assert ScanHelpers(2, spare.is_set).run(10, part) == list(range(10))
    assert len(by_helper) == 1  # it finished its part, then took no other


@pytest.mark.parametrize("spare", [True, False])
def test_a_failing_part_fails_the_scan(spare: bool) -> None:
    def part(i: int) -> int:
        if i == 3:
            raise ValueError("part 3 failed")
        return i

    with pytest.raises(ValueError, match="part 3 failed"):
        ScanHelpers(2, lambda: spare).run(6, part)


async def test_the_worker_scans_a_large_flat_collection_on_every_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query to a flat collection through the worker's request path: the scan's
    parts run on two threads at once (the query is the only read), same answer."""
    monkeypatch.setattr(maintenance, "usable_cores", lambda: 2)
    monkeypatch.setattr(maintenance, "runnable_tasks", lambda: 2)  # the scan's two threads
    # Large enough not to be scanned on the event loop (INLINE_MAX_FLAT_FLOATS)
    rows = 20_000
    monkeypatch.setattr(flat_index, "PART_FLOATS", 2_000 * DIM)
    both_running = threading.Barrier(2, timeout=30)
    names: set[str] = set()
    lock = threading.Lock()
    scan = flat_index._scan

    def watched(
        matrix: np.ndarray, queries: np.ndarray, k: int, metric: str
    ) -> tuple[np.ndarray, np.ndarray]:
        name = threading.current_thread().name
        with lock:
            first = name not in names
            names.add(name)
        if first:  # each thread's first part: passes only if both scan at once
            both_running.wait()
        return scan(matrix, queries, k, metric)

    service = WorkerService(
        TenantRegistry(tmp_path / "hot", 1 << 30, maintenance=Maintenance(autostart=False))
    )

    async def send(
        op: str, arrays: dict[str, np.ndarray] | None = None, **header: object
    ) -> dict[str, Any]:
        wire = encode_frame({"op": op, "rid": 1, "tenant": "acme_1", "epoch": 1, **header}, arrays)
        reply, _ = await service.handle(decode_frame(wire))
        assert reply["ok"] is True, reply
        return reply

    rng = np.random.default_rng(11)
    base = rng.standard_normal((rows, DIM), dtype=np.float32)
    asked = rng.standard_normal((1, DIM), dtype=np.float32)
    try:
        await send("assign")
        await send("create_collection", collection="f", dimension=DIM, metric="l2", index="flat")
        ids = [str(i) for i in range(rows)]
        await send("upsert", {"vectors": base}, collection="f", ids=ids, metadata=[None] * rows)
        monkeypatch.setattr(flat_index, "_scan", watched)
        reply = await send("query", {"queries": asked}, collection="f", top_k=10)
    finally:
        await service.release_all()
    expected = [str(i) for i in _brute_force(base, asked, "l2", 10)[0]]
    assert reply["results"][0]["ids"] == expected
    assert len(names) == 2 and any(name.startswith("scan") for name in names)


def test_an_abandoned_scan_stops_between_parts(monkeypatch: pytest.MonkeyPatch, hot: Path) -> None:
    """A request's budget is checked before each part: cancelled during the scan, the
    query ends with the budget's error after the part under way, not at the scan's end."""
    monkeypatch.setattr(flat_index, "PART_FLOATS", 100 * DIM)  # 10 parts
    alone = Maintenance(autostart=False)
    alone.scans = flat_index.ALONE  # one thread: the parts scanned are exactly counted
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=alone)
    try:
        spec = {"collection": "f", "dimension": DIM, "metric": "l2", "index": "flat"}
        store.create_collection(parse_collection_spec(spec))
        coll = store.collection("f")
        base, asked = _data()
        coll.upsert([str(i) for i in range(ROWS)], [None] * ROWS, base)
        budget = WorkBudget()
        scanned: list[int] = []
        scan = flat_index._scan

        def cancelling(
            matrix: np.ndarray, queries: np.ndarray, k: int, metric: str
        ) -> tuple[np.ndarray, np.ndarray]:
            scanned.append(len(matrix))
            budget.cancel()  # the client goes away while the first part is scanned
            return scan(matrix, queries, k, metric)

        monkeypatch.setattr(flat_index, "_scan", cancelling)
        with pytest.raises(StoreError, match="cancelled") as refused:
            coll.query(asked[:1], 10, False, False, budget=budget)
        assert refused.value.code == ErrorCode.UNAVAILABLE
        assert scanned == [100]  # one part of ten
        # A budget left alone scans every part
        scanned.clear()

        def counting(
            matrix: np.ndarray, queries: np.ndarray, k: int, metric: str
        ) -> tuple[np.ndarray, np.ndarray]:
            scanned.append(len(matrix))
            return scan(matrix, queries, k, metric)

        monkeypatch.setattr(flat_index, "_scan", counting)
        results, _ = coll.query(asked[:1], 10, False, False, budget=WorkBudget())
        assert len(scanned) == 10
        assert results[0]["ids"] == [str(i) for i in _brute_force(base, asked[:1], "l2", 10)[0]]
    finally:
        store.close()


def test_a_tenant_is_alone_until_another_tenants_read_is_recent() -> None:
    activity = Activity()
    assert not activity.alone_for(0.0)  # nothing in flight
    for _ in range(3):  # the tenant's own queries, one after another
        activity.began("a")
        assert activity.alone_for(3600.0) and activity.alone_for(0.0)
        activity.ended("a")
    activity.began("b")
    activity.ended("b")
    activity.began("a")
    assert not activity.alone_for(3600.0)  # b's read ended within the hour
    assert activity.alone_for(0.0)
    activity.began("a")  # a second read in flight, even the tenant's own
    assert not activity.alone_for(0.0)
    activity.ended("a")
    activity.ended("a")
    activity.began(None)  # a micro-batch of quick queries: anyone's
    activity.ended(None)
    activity.began("a")
    assert not activity.alone_for(3600.0) and activity.alone_for(0.0)
    activity.ended("a")
    activity.began("a")  # a's own read since: the batch's end still counts
    assert not activity.alone_for(3600.0)


def test_runnable_threads_are_read_from_the_kernels_count(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.69 1.11 1.14 2/139 24632\n")
    assert runnable_tasks(loadavg) == 2
    loadavg.write_text("garbage\n")
    assert runnable_tasks(loadavg) is None
    assert runnable_tasks(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("runnable", "others_recent", "spare"),
    [(2, False, True), (3, False, False), (None, False, False), (2, True, False)],
)
def test_a_scan_takes_cores_only_when_the_machine_and_the_worker_are_quiet(
    monkeypatch: pytest.MonkeyPatch, runnable: int | None, others_recent: bool, spare: bool
) -> None:
    monkeypatch.setattr(maintenance, "usable_cores", lambda: 2)
    monkeypatch.setattr(maintenance, "runnable_tasks", lambda: runnable)
    m = Maintenance(autostart=False)
    if others_recent:
        m.activity.began("b")
        m.activity.ended("b")  # just now: well within QUIET_S
    m.activity.began("a")
    assert m.cores_spare() is spare
