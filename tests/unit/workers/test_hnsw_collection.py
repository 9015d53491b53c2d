"""HNSW collections: fresh buffer, tombstones, filters, persistence, backpressure, quotas."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import faiss
import numpy as np
import orjson
import pytest

from workers.collection import INDEX_FILE, Collection
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.hnsw_index import GRAPH_COST_EF_MARGIN
from workers.maintenance import Maintenance
from workers.metadata_filter import parse_filter
from workers.protocol import ErrorCode
from workers.tenant_store import TenantStore
from workers.work_budget import WorkBudget

from .conftest import SMALL_WAL

DIM = 16


def _make(store: TenantStore, name: str = "h", metric: str = "l2", **hnsw: int) -> Collection:
    store.create_collection(
        parse_collection_spec(
            {
                "collection": name,
                "dimension": DIM,
                "metric": metric,
                "index": "hnsw",
                "hnsw": hnsw or None,
            }
        )
    )
    return store.collection(name)


def _brute(base: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    if metric == "l2":
        keys = ((queries[:, None, :] - base[None]) ** 2).sum(-1)
    else:
        b, q = base, queries
        if metric == "cosine":
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        keys = -(q @ b.T)
    return np.argsort(keys, axis=1, kind="stable")[:, :k]


def _ids(results: list[dict]) -> list[list[str]]:
    return [r["ids"] for r in results]


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_hnsw_answers_match_brute_force_before_and_after_indexing(
    store: TenantStore, metric: str
) -> None:
    rng = np.random.default_rng(1)
    coll = _make(store, metric=metric)
    base = rng.standard_normal((300, DIM), dtype=np.float32)
    coll.upsert([f"v{i}" for i in range(300)], [{"i": i} for i in range(300)], base)
    queries = rng.standard_normal((5, DIM), dtype=np.float32)
    expected = [[f"v{i}" for i in row] for row in _brute(base, queries, 10, metric)]
    # Before the graph has them: answered exactly from the fresh buffer.
    fresh_results, _ = coll.query(queries, 10, False, False)
    assert _ids(fresh_results) == expected
    coll.flush_index()
    assert coll.index is not None and coll.index.fresh_count == 0
    assert coll.index.node_count == 300
    graph_results, _ = coll.query(queries, 10, False, False, ef_search=300)
    assert _ids(graph_results) == expected
    for a, b in zip(fresh_results, graph_results, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], rel=1e-4, abs=1e-4)


def test_writes_do_not_wait_for_the_graph_and_are_queryable_at_once(store: TenantStore) -> None:
    quiet = Maintenance(autostart=False)  # nothing moves into the graph by itself
    store._options = type(store._options)(SMALL_WAL, 20_000, quiet)
    coll = _make(store)
    vectors = np.eye(DIM, dtype=np.float32)
    coll.upsert([f"e{i}" for i in range(DIM)], [None] * DIM, vectors)
    assert coll.index is not None and coll.index.fresh_count == DIM
    assert coll.index.node_count == 0
    results, _ = coll.query(vectors[3:4] * 2, 1, False, False)
    assert _ids(results) == [["e3"]]


def test_deleted_and_replaced_vectors_never_come_back(store: TenantStore) -> None:
    rng = np.random.default_rng(2)
    coll = _make(store)
    base = rng.standard_normal((200, DIM), dtype=np.float32)
    ids = [f"v{i}" for i in range(200)]
    coll.upsert(ids, [None] * 200, base)
    coll.flush_index()
    # Replace v0 far away, delete v1..v99: their graph nodes become tombstones.
    coll.upsert(["v0"], [{"moved": True}], np.full((1, DIM), 50.0, np.float32))
    assert coll.delete(ids[1:100]) == 99
    for queries in (base[:100], np.full((1, DIM), 50.0, np.float32)):
        results, _ = coll.query(queries, 20, True, False)
        for r in results:
            assert not set(r["ids"]) & set(ids[1:100])
            assert len(r["ids"]) == 20
    results, _ = coll.query(base[:1], 101, True, False)
    assert len(results[0]["ids"]) == 101 and results[0]["ids"][-1] == "v0"
    coll.flush_index()  # tombstones past 25 %: the graph is rebuilt without them
    assert coll.index is not None and coll.index.tombstones == 0
    assert coll.index.node_count == 101
    results, _ = coll.query(np.full((1, DIM), 50.0, np.float32), 1, True, False)
    assert results[0]["ids"] == ["v0"] and results[0]["metadata"] == [{"moved": True}]


def test_selective_filter_on_hnsw_still_returns_top_k(store: TenantStore) -> None:
    rng = np.random.default_rng(3)
    coll = _make(store)
    n = 3000
    base = rng.standard_normal((n, DIM), dtype=np.float32)
    meta = [{"group": "rare" if i % 100 == 0 else "common", "i": i} for i in range(n)]
    coll.upsert([f"v{i}" for i in range(n)], meta, base)
    coll.flush_index()
    queries = rng.standard_normal((4, DIM), dtype=np.float32)
    for doc, members in [
        ({"group": "rare"}, [i for i in range(n) if i % 100 == 0]),
        ({"group": "common", "i": {"$lt": 2900}}, [i for i in range(2900) if i % 100]),
    ]:
        results, _ = coll.query(queries, 10, True, False, parse_filter(doc), ef_search=400)
        sub = np.array(members)
        expected = [[f"v{sub[j]}" for j in row] for row in _brute(base[sub], queries, 10, "l2")]
        assert _ids(results) == expected
        assert all(len(r["ids"]) == 10 for r in results)


def test_top_k_beyond_the_live_rows_after_a_delete_answers_every_live_row(
    store: TenantStore,
) -> None:
    # The graph answers min(k, live nodes) columns and may come back short; the exact
    # fallback then fills them. It once padded to k and broke on the narrower graph answer.
    rng = np.random.default_rng(11)
    dim = 8  # low dimension: the graph search comes back short after the delete
    spec = {"collection": "short", "dimension": dim, "metric": "l2", "index": "hnsw"}
    store.create_collection(parse_collection_spec(spec))
    coll = store.collection("short")
    base = rng.standard_normal((300, dim)).astype(np.float32)
    meta = [{"color": ("red", "green", "blue")[i % 3]} for i in range(300)]
    coll.upsert([f"v{i}" for i in range(300)], meta, base)
    coll.flush_index()
    assert coll.delete_where(parse_filter({"color": "red"})) == 100
    queries = rng.standard_normal((2, dim)).astype(np.float32)
    results, _ = coll.query(queries, 300, True, False)
    live = np.array([i for i in range(300) if i % 3])
    expected = [[f"v{live[j]}" for j in row] for row in _brute(base[live], queries, 200, "l2")]
    assert _ids(results) == expected
    assert {m["color"] for r in results for m in r["metadata"]} == {"green", "blue"}


def test_index_is_saved_and_reused_and_a_corrupt_one_is_rebuilt(hot: Path) -> None:
    rng = np.random.default_rng(4)
    quiet = Maintenance(autostart=False)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=quiet)
    coll = _make(store, m=8, ef_construction=40)
    base = rng.standard_normal((500, DIM), dtype=np.float32)
    coll.upsert([f"v{i}" for i in range(500)], [None] * 500, base)
    coll.flush_index()
    coll.upsert(["v0"], [None], np.zeros((1, DIM), np.float32))  # after the save
    queries = rng.standard_normal((3, DIM), dtype=np.float32)
    before = coll.query(queries, 10, False, False)[0]
    directory = coll.directory
    store.close()
    assert (directory / INDEX_FILE).is_file()
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=quiet)
    coll = store.collection("h")
    assert coll.index is not None
    # Reused, not rebuilt: only v0, replaced after the save, waits in the fresh buffer.
    assert coll.index.node_count == 500 and coll.index.fresh_count == 1
    assert coll.index.tombstones == 1
    assert coll.info()["hnsw"] == {"m": 8, "ef_construction": 40}
    assert _ids(coll.query(queries, 10, False, False)[0]) == _ids(before)
    store.close()
    data = bytearray((directory / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / INDEX_FILE).write_bytes(bytes(data))
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=quiet)
    coll = store.collection("h")
    assert coll.index is not None and coll.index.fresh_count == 500  # rebuilt from segments
    assert _ids(coll.query(queries, 10, False, False)[0]) == _ids(before)
    store.close()


def test_the_streamed_index_file_is_magic_ids_graph_and_crc(hot: Path) -> None:
    quiet = Maintenance(autostart=False)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=quiet)
    coll = _make(store, m=8, ef_construction=40)
    base = np.random.default_rng(9).standard_normal((300, DIM), dtype=np.float32)
    coll.upsert([f"v{i}" for i in range(300)], [None] * 300, base)
    coll.flush_index()  # saved through write_durably, FAISS's pieces streamed
    data = (coll.directory / INDEX_FILE).read_bytes()
    index = coll.index
    assert index is not None
    ids = orjson.dumps(index.node_names())
    graph = faiss.serialize_index(index._graph).tobytes()  # FAISS's own whole-file form
    body = b"VPHNSW1\0" + struct.pack("<Q", len(ids)) + ids + graph
    assert data == body + struct.pack("<I", zlib.crc32(body))
    store.close()


def test_a_bulk_import_is_indexed_before_its_log_is_compacted(hot: Path) -> None:
    quiet = Maintenance(autostart=False)
    quiet.cores = 1  # steps of INSERT_CHUNK (32)
    vectors = np.random.default_rng(8).standard_normal((200, DIM), dtype=np.float32)
    ids = [f"v{i}" for i in range(200)]
    probe = TenantStore.open(hot, "probe", SMALL_WAL, maintenance=quiet)
    probe_coll = _make(probe)
    probe_coll.upsert(ids, [None] * 200, vectors)
    logged = probe_coll._wal.size  # the log this import writes
    probe.close()
    # Compaction is due at half the import's log, but deferred (up to 4x) while the
    # graph has vectors waiting: every step indexes until the fresh buffer runs dry.
    store = TenantStore.open(hot, "tenant_a", logged // 2, maintenance=quiet)
    coll = _make(store)
    coll.upsert(ids, [None] * 200, vectors)
    assert coll.index is not None
    steps = 0
    while coll.index.fresh_count:
        assert coll.run_maintenance()
        assert coll.generation == 0  # not compacted yet
        steps += 1
    assert steps == -(-200 // 32)
    assert coll.run_maintenance() and coll.generation == 1  # now compacted, once
    assert not coll.run_maintenance()  # then the index saved, and nothing left
    # Past four times its size, the log is compacted even while vectors wait.
    for batch in range(10):
        coll.upsert([f"w{batch}-{i}" for i in range(200)], [None] * 200, vectors + batch + 1)
    assert coll._wal.size > 4 * (logged // 2) and coll.index.fresh_count
    generation = coll.generation
    assert coll.run_maintenance() and coll.generation == generation + 1
    store.close()


def test_a_full_fresh_buffer_answers_busy_and_writes_nothing(hot: Path) -> None:
    quiet = Maintenance(autostart=False)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, fresh_limit=50, maintenance=quiet)
    coll = _make(store)
    vectors = np.ones((40, DIM), np.float32)
    coll.upsert([f"a{i}" for i in range(40)], [None] * 40, vectors)
    with pytest.raises(StoreError) as err:
        coll.upsert([f"b{i}" for i in range(20)], [None] * 20, vectors[:20])
    assert err.value.code == ErrorCode.BUSY
    assert coll.vector_count == 40
    coll.flush_index()
    coll.upsert([f"b{i}" for i in range(20)], [None] * 20, vectors[:20])
    assert coll.vector_count == 60
    store.close()


def test_delete_by_filter_is_durable(hot: Path) -> None:
    for index in ("flat", "hnsw"):
        store = TenantStore.open(hot, f"tenant_{index}", SMALL_WAL)
        store.create_collection(
            parse_collection_spec(
                {"collection": "c", "dimension": 2, "metric": "l2", "index": index}
            )
        )
        coll = store.collection("c")
        meta = [{"kind": "tmp" if i % 3 == 0 else "keep", "i": i} for i in range(30)]
        coll.upsert([f"v{i}" for i in range(30)], meta, np.ones((30, 2), np.float32))
        assert coll.delete_where(parse_filter({"kind": "tmp"})) == 10
        assert coll.delete_where(parse_filter({"kind": "tmp"})) == 0
        store.close()
        store = TenantStore.open(hot, f"tenant_{index}", SMALL_WAL)
        coll = store.collection("c")
        assert coll.vector_count == 20
        results, _ = coll.query(np.ones((1, 2), np.float32), 30, True, False)
        assert sorted(m["i"] for m in results[0]["metadata"]) == [i for i in range(30) if i % 3]
        store.close()


def test_vector_quota_counts_the_whole_tenant_and_ignores_replacements(
    store: TenantStore,
) -> None:
    for name in ("a", "b"):
        store.create_collection(
            parse_collection_spec(
                {"collection": name, "dimension": 2, "metric": "l2", "index": "flat"}
            )
        )
    ones = np.ones((6, 2), np.float32)
    store.upsert("a", [f"x{i}" for i in range(6)], [None] * 6, ones, max_vectors=10)
    with pytest.raises(StoreError) as err:
        store.upsert("b", [f"y{i}" for i in range(5)], [None] * 5, ones[:5], max_vectors=10)
    assert err.value.code == ErrorCode.QUOTA_EXCEEDED
    assert err.value.message == (
        "vector quota exceeded: the tenant has 6 vectors, this write adds 5, the limit is 10"
    )
    assert store.collection("b").vector_count == 0
    # Replacing existing ids adds nothing; 4 new ones exactly reach the limit.
    ids = [f"x{i}" for i in range(6)] + [f"y{i}" for i in range(4)]
    store.upsert("a", ids[:6], [None] * 6, ones, max_vectors=10)
    store.upsert("b", ids[6:], [None] * 4, ones[:4], max_vectors=10)
    assert store.usage()["vectors"] == 10
    # Unloaded collections are still counted.
    store.unload()
    with pytest.raises(StoreError):
        store.upsert("b", ["z"], [None], ones[:1], max_vectors=10)


def test_collection_quota(store: TenantStore) -> None:
    def spec(name: str):
        return parse_collection_spec(
            {"collection": name, "dimension": 2, "metric": "l2", "index": "flat"}
        )

    store.create_collection(spec("a"), max_collections=2)
    store.create_collection(spec("b"), max_collections=2)
    with pytest.raises(StoreError) as err:
        store.create_collection(spec("c"), max_collections=2)
    assert err.value.code == ErrorCode.QUOTA_EXCEEDED
    assert "has 2 collections, the limit is 2" in err.value.message
    with pytest.raises(StoreError) as err:
        store.create_collection(spec("a"), max_collections=2)
    assert err.value.code == ErrorCode.CONFLICT
    assert store.collection_names() == ["a", "b"]


def test_steady_writes_still_save_the_index_once_it_is_old(
    hot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.collection as collection_module

    quiet = Maintenance(autostart=False)
    quiet.cores = 1  # steps of INSERT_CHUNK (32), as while queries run
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=quiet)
    coll = _make(store)
    vectors = np.random.default_rng(6).standard_normal((100, DIM), dtype=np.float32)
    coll.upsert([f"v{i}" for i in range(100)], [None] * 100, vectors)
    assert coll.index is not None
    coll._index_step()  # one chunk into the graph; the buffer is not yet dry
    assert coll.index.fresh_count > 0 and not (coll.directory / INDEX_FILE).exists()
    monkeypatch.setattr(collection_module, "INDEX_SAVE_MAX_AGE_S", 0.0)
    coll._index_step()  # the saved graph is now "old": saved although writes are pending
    assert coll.index.fresh_count > 0 and (coll.directory / INDEX_FILE).is_file()
    store.close()
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, maintenance=quiet)
    reloaded = store.collection("h").index
    assert reloaded is not None and reloaded.node_count == 64 and reloaded.fresh_count == 36
    store.close()


def test_a_drained_fresh_buffer_gives_its_id_maps_back(store: TenantStore) -> None:
    # A dict keeps its peak size when emptied; the fresh buffer's two id maps (MiB for
    # tens of thousands of pending vectors) are replaced once the graph holds them all.
    coll = _make(store)
    count = 5000
    vectors = np.random.default_rng(3).standard_normal((count, DIM), dtype=np.float32)
    coll.upsert([f"v{i}" for i in range(count)], [None] * count, vectors)
    index = coll.index
    assert index is not None
    peak = sys.getsizeof(index._fresh._rows) + sys.getsizeof(index._fresh_version)
    assert Maintenance.shared().wait_idle(60)
    assert index.fresh_count == 0 and index.node_count == count
    drained = sys.getsizeof(index._fresh._rows) + sys.getsizeof(index._fresh_version)
    assert drained * 50 < peak
    results, _ = coll.query(vectors[:3], 1, False, False)
    assert _ids(results) == [["v0"], ["v1"], ["v2"]]


def test_a_graph_search_costs_the_vectors_it_compares_not_the_whole_table(
    store: TenantStore,
) -> None:
    """The rate limit charges a query the vectors its search compares (work_budget):
    a graph search walks about (ef + margin) x 2M of them, not every row."""
    rng = np.random.default_rng(5)
    coll = _make(store, m=4)
    rows = 3000
    coll.upsert(
        [f"v{i}" for i in range(rows)],
        [{"even": i % 2 == 0} for i in range(rows)],
        rng.standard_normal((rows, DIM), dtype=np.float32),
    )
    coll.flush_index()
    queries = rng.standard_normal((3, DIM), dtype=np.float32)
    walk = (32 + GRAPH_COST_EF_MARGIN) * 2 * 4
    cases = [
        ({}, 3 * walk),  # the graph alone
        ({"predicate": parse_filter({"even": True})}, rows + 3 * rows // 2),  # exact over matches
    ]
    for kwargs, expected in cases:
        budget = WorkBudget()
        coll.query(queries, 10, False, False, ef_search=32, budget=budget, **kwargs)
        assert budget.cost == expected, kwargs
    # fresh vectors are scanned exactly on top of the walk
    coll.upsert(["new"], [None], rng.standard_normal((1, DIM), dtype=np.float32))
    budget = WorkBudget()
    coll.query(queries, 10, False, False, ef_search=32, budget=budget)
    assert budget.cost == 3 * (walk + 1)
    # a walk never counts more than the graph holds
    budget = WorkBudget()
    coll.query(queries[:1], 10, False, False, ef_search=5000, budget=budget)
    assert budget.cost == rows + 1
