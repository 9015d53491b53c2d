"""Graph building on every core while no reads run: same graph contents, same answers."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest

from workers.collection import Collection
from workers.collection_spec import parse_collection_spec
from workers.hnsw_index import (
    IDLE_STEP_S,
    INSERT_CHUNK,
    INSERT_CHUNK_IDLE,
    INSERT_CHUNK_IDLE_MAX,
    HnswIndex,
    add_with_threads,
    fresh_limit_for,
    next_idle_chunk,
)
from workers.maintenance import Activity, Maintenance, usable_cores
from workers.protocol import decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers.tenant_store import TenantStore

from .conftest import SMALL_WAL

DIM = 24
COUNT = 1500


def _collection(hot: Path, tenant: str, maintenance: Maintenance) -> tuple[TenantStore, Collection]:
    store = TenantStore.open(hot, tenant, SMALL_WAL, maintenance=maintenance)
    store.create_collection(
        parse_collection_spec(
            {
                "collection": "c",
                "dimension": DIM,
                "metric": "l2",
                "index": "hnsw",
                "hnsw": {"m": 16, "ef_construction": 100},
            }
        )
    )
    return store, store.collection("c")


def _exact(base: np.ndarray, queries: np.ndarray, k: int) -> list[list[str]]:
    keys = ((queries[:, None, :] - base[None]) ** 2).sum(-1)
    return [[str(i) for i in row] for row in np.argsort(keys, axis=1, kind="stable")[:, :k]]


def _recall(found: list[dict], truth: list[list[str]]) -> float:
    hits = sum(len(set(r["ids"]) & set(t)) for r, t in zip(found, truth, strict=True))
    return hits / sum(len(t) for t in truth)


def test_reads_keep_graph_building_to_one_thread() -> None:
    maintenance = Maintenance(autostart=False)
    maintenance.cores = 4
    activity = maintenance.activity
    assert maintenance.build_threads() == 4  # nothing has run yet
    activity.began()
    assert maintenance.build_threads() == 1
    activity.ended()
    assert not activity.quiet()  # a read just ended: more may follow
    assert activity.quiet(for_s=0.0)
    single = Maintenance(autostart=False)
    single.cores = 1
    assert single.build_threads() == 1


def test_activity_counts_overlapping_reads() -> None:
    activity = Activity()
    activity.began()
    activity.began()
    activity.ended()
    assert not activity.quiet(for_s=0.0)
    activity.ended()
    assert activity.quiet(for_s=0.0)


def test_add_with_threads_restores_the_callers_thread_count() -> None:
    seen: dict[str, int] = {}

    def build() -> None:
        faiss.omp_set_num_threads(1)
        graph = faiss.IndexHNSWFlat(DIM, 16)
        add_with_threads(graph, np.random.default_rng(0).random((300, DIM), np.float32), 2)
        seen["after"] = faiss.omp_get_max_threads()
        seen["nodes"] = graph.ntotal

    thread = threading.Thread(target=build)
    thread.start()
    thread.join()
    assert seen == {"after": 1, "nodes": 300}


def test_quiet_spell_steps_double_within_their_time_bound() -> None:
    fast = IDLE_STEP_S / 10_000  # seconds per vector: 4,096 would take under half the bound
    assert next_idle_chunk(256, 256, 256 * fast) == 512
    assert next_idle_chunk(2048, 2048, 2048 * fast) == INSERT_CHUNK_IDLE_MAX
    assert next_idle_chunk(INSERT_CHUNK_IDLE_MAX, INSERT_CHUNK_IDLE_MAX, 0.01) == 4096
    # A step that took about the bound stays as it is; one that took twice as long halves.
    assert next_idle_chunk(1024, 1024, IDLE_STEP_S) == 1024
    assert next_idle_chunk(1024, 1024, 2 * IDLE_STEP_S) == 512
    # Never below the first quiet step, however slow (a huge M or dimension).
    assert next_idle_chunk(256, 256, 100 * IDLE_STEP_S) == INSERT_CHUNK_IDLE
    # A step cut short by a dry fresh buffer says nothing about bigger ones.
    assert next_idle_chunk(2048, 300, 300 * fast) == 2048


def test_a_graph_built_on_every_core_answers_like_one_built_on_one(
    hot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[tuple[int, int]] = []
    add = HnswIndex.add_to_graph

    def recorded(
        index: HnswIndex, vectors: np.ndarray, threads: int = 1, levels: np.ndarray | None = None
    ) -> int:
        sizes.append((len(vectors), threads))
        return add(index, vectors, threads, levels)

    monkeypatch.setattr(HnswIndex, "add_to_graph", recorded)
    rng = np.random.default_rng(7)
    base = rng.standard_normal((COUNT, DIM), dtype=np.float32)
    queries = rng.standard_normal((40, DIM), dtype=np.float32)
    truth = _exact(base, queries, 10)
    ids = [str(i) for i in range(COUNT)]
    answers = {}
    for threads in (1, 2):
        maintenance = Maintenance(autostart=False)
        maintenance.cores = threads
        store, coll = _collection(hot, f"tenant_{threads}", maintenance)
        coll.upsert(ids, [{"i": i} for i in range(COUNT)], base)
        steps = 0
        while coll.run_maintenance():
            steps += 1
        index = coll.index
        assert index is not None
        assert index.fresh_count == 0 and index.node_count == COUNT and index.tombstones == 0
        # the step size followed the thread count (plus a step or two for the save):
        # fixed on one thread; on more, doubling from INSERT_CHUNK_IDLE (these are fast)
        if threads == 1:
            want = [INSERT_CHUNK] * (COUNT // INSERT_CHUNK) + [COUNT % INSERT_CHUNK]
        else:
            want = [INSERT_CHUNK_IDLE, 2 * INSERT_CHUNK_IDLE, COUNT - 3 * INSERT_CHUNK_IDLE]
        assert sizes == [(size, threads) for size in want]
        assert len(want) <= steps <= len(want) + 2
        sizes.clear()
        found, _ = coll.query(queries, 10, True, False, ef_search=200)
        assert _recall(found, truth) >= 0.98
        for r in found:
            assert r["metadata"] == [{"i": int(i)} for i in r["ids"]]
        # Exhaustive ef: the graph holds every vector, so both answer exactly.
        answers[threads] = [
            r["ids"] for r in coll.query(queries, 10, False, False, ef_search=COUNT)[0]
        ]
        store.close()
    assert answers[1] == answers[2] == truth


async def test_the_worker_counts_reads_not_writes(tmp_path: Path) -> None:
    maintenance = Maintenance(autostart=False)
    maintenance.cores = 2
    service = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30, maintenance=maintenance))

    async def send(op: str, arrays: dict[str, np.ndarray] | None = None, **header: object) -> None:
        wire = encode_frame({"op": op, "rid": 1, "tenant": "acme_1", "epoch": 1, **header}, arrays)
        reply, _ = await service.handle(decode_frame(wire))
        assert reply["ok"] is True, reply

    try:
        await send("assign")
        await send("create_collection", collection="c", dimension=2, metric="l2", index="hnsw")
        vectors = np.array([[1, 0], [0, 1]], np.float32)
        await send(
            "upsert", {"vectors": vectors}, collection="c", ids=["a", "b"], metadata=[None] * 2
        )
        assert maintenance.activity.last_end == -math.inf  # writes leave graph building alone
        assert maintenance.build_threads() == 2
        await send("query", {"queries": vectors}, collection="c", top_k=1)
        assert maintenance.activity.in_flight == 0 and maintenance.activity.last_end > -math.inf
        assert maintenance.build_threads() == 1  # a read just ended
    finally:
        await service.release_all()


async def test_request_threads_search_with_one_faiss_thread(tmp_path: Path) -> None:
    service = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    try:
        # Whatever OMP_NUM_THREADS says: each request thread sets its own count.
        counts = {service._threads.submit(faiss.omp_get_max_threads).result() for _ in range(4)}
        assert counts == {1}
    finally:
        await service.release_all()


def test_the_default_fresh_buffer_bound_follows_the_dimension(hot: Path) -> None:
    assert fresh_limit_for(384) == 43_690  # 64 MiB of 384-d vectors
    assert fresh_limit_for(16) == 50_000
    assert fresh_limit_for(4096) == 20_000
    store, coll = _collection(hot, "tenant_f", Maintenance(autostart=False))
    assert coll.index is not None and coll.index.fresh_limit == fresh_limit_for(DIM)
    store.close()


def test_usable_cores_honours_a_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    unlimited = usable_cores(tmp_path / "absent")
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == unlimited
    cpu_max.write_text("100000 100000\n")
    assert usable_cores(cpu_max) == 1
    cpu_max.write_text("50000 100000\n")
    assert usable_cores(cpu_max) == 1  # half a CPU still builds on one thread
    cpu_max.write_text("garbage\n")
    assert usable_cores(cpu_max) == unlimited
