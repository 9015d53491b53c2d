"""The tenant store keeps exactly what was acknowledged: replace, delete, compaction, reopen."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from workers.collection import Collection
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.protocol import ErrorCode
from workers.segment import read_manifest
from workers.tenant_store import TenantStore

from .conftest import SMALL_WAL


def _spec(name: str = "docs", dim: int = 8, metric: str = "cosine", **extra: object):
    return parse_collection_spec(
        {"collection": name, "dimension": dim, "metric": metric, "index": "flat", **extra}
    )


def _state(coll: Collection) -> dict[str, tuple[bytes, object]]:
    """Every live vector: id -> (exact value bytes, metadata)."""
    ids = sorted(coll._table.ids)
    found, meta, vectors = coll.fetch(ids)
    return {i: (vectors[k].tobytes(), meta[k]) for k, i in enumerate(found)}


def _fill(coll: Collection, seed: int, n: int, prefix: str = "v") -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, coll.spec.dimension), np.float32)
    ids = [f"{prefix}{i}" for i in range(n)]
    coll.upsert(ids, [{"n": i, "tag": prefix} for i in range(n)], vectors)
    return vectors


def test_fetch_returns_bit_identical_values_in_request_order(store: TenantStore) -> None:
    store.create_collection(_spec())
    coll = store.collection("docs")
    # Values that normalization would change, to prove fetch returns the originals.
    vectors = np.random.default_rng(3).standard_normal((4, 8), np.float32) * 1e3
    coll.upsert(["a", "b", "c", "d"], [None, {"k": 1}, None, None], vectors)
    found, meta, values = coll.fetch(["c", "missing", "a", "b", "a"])
    assert found == ["c", "a", "b"]
    assert meta == [None, None, {"k": 1}]
    assert values.dtype == np.float32
    assert values.tobytes() == vectors[[2, 0, 1]].tobytes()


def test_replaced_and_deleted_vectors_are_never_returned(store: TenantStore) -> None:
    store.create_collection(_spec(metric="l2"))
    coll = store.collection("docs")
    _fill(coll, 1, 50)
    new = np.full((1, 8), 100.0, np.float32)
    coll.upsert(["v3"], [{"new": True}], new)
    assert coll.delete(["v5", "v7", "v5", "nope"]) == 2
    assert coll.delete(["v5"]) == 0
    assert coll.vector_count == 48
    results, _ = coll.query(np.full((1, 8), 100.0, np.float32), 48, True, False)
    ids = results[0]["ids"]
    assert ids[0] == "v3" and results[0]["scores"][0] == 0.0
    assert results[0]["metadata"][0] == {"new": True}
    assert "v5" not in ids and "v7" not in ids and len(ids) == 48
    assert coll.fetch(["v5", "v7"])[0] == []


def test_duplicate_ids_in_one_batch_last_wins(store: TenantStore) -> None:
    store.create_collection(_spec(dim=2))
    coll = store.collection("docs")
    vectors = np.array([[1, 0], [0, 1], [2, 2]], np.float32)
    assert coll.upsert(["x", "y", "x"], [{"v": 1}, None, {"v": 3}], vectors) == 3
    _, meta, values = coll.fetch(["x"])
    assert coll.vector_count == 2
    assert meta == [{"v": 3}] and values.tobytes() == vectors[2:].tobytes()


def test_compaction_then_reload_equals_before(hot: Path, store: TenantStore) -> None:
    store.create_collection(_spec())
    coll = store.collection("docs")
    _fill(coll, 1, 40)
    coll.delete(["v1", "v2"])
    coll.upsert(["v3"], [None], np.ones((1, 8), np.float32))
    before = _state(coll)
    query = np.random.default_rng(9).standard_normal((2, 8), np.float32)
    results_before = coll.query(query, 5, True, False)[0]
    coll.compact()
    assert coll.generation == 1
    names = sorted(p.name for p in coll.directory.iterdir())
    assert names == ["collection.json", "manifest.json", "seg-1", "wal-1.log"]
    assert (coll.directory / "wal-1.log").stat().st_size == 0
    _fill(coll, 2, 3, prefix="after")
    after_compaction = _state(coll)
    store.close()
    reopened = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    coll2 = reopened.collection("docs")
    assert _state(coll2) == after_compaction
    assert {k: v for k, v in after_compaction.items() if not k.startswith("after")} == before
    assert coll2.query(query, 5, True, False)[0] == results_before
    reopened.close()


def test_wal_over_threshold_compacts_automatically(hot: Path) -> None:
    store = TenantStore.open(hot, "tenant_a", compact_bytes=2048)
    store.create_collection(_spec(dim=16))
    coll = store.collection("docs")
    for batch in range(10):
        _fill(coll, batch, 8, prefix=f"b{batch}-")
        # Compaction runs in the background, never in the writer's request; waiting
        # here keeps a busy machine from folding all ten batches into one compaction.
        assert store.maintenance.wait_idle()
    assert coll.generation > 1
    assert (coll.directory / read_manifest(coll.directory).wal).stat().st_size <= 2048 + 1024
    before = _state(coll)
    assert len(before) == 80
    store.close()
    reopened = TenantStore.open(hot, "tenant_a", 2048)
    assert _state(reopened.collection("docs")) == before
    reopened.close()


def test_data_persists_across_store_reopen_and_other_tenants_see_nothing(hot: Path) -> None:
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    store.create_collection(_spec())
    _fill(store.collection("docs"), 5, 20)
    before = _state(store.collection("docs"))
    info = store.collection("docs").info()
    store.close()
    again = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    assert again.collection("docs").info() == info
    assert _state(again.collection("docs")) == before
    other = TenantStore.open(hot, "tenant_b", SMALL_WAL)
    assert other.list_collections() == []
    with pytest.raises(StoreError) as err:
        other.collection("docs")
    assert err.value.code == ErrorCode.NOT_FOUND
    again.close()
    other.close()


def test_leftovers_of_an_interrupted_compaction_are_ignored(hot: Path, store: TenantStore) -> None:
    store.create_collection(_spec())
    coll = store.collection("docs")
    _fill(coll, 1, 10)
    expected = _state(coll)
    directory = coll.directory
    store.close()
    # A half-written temp segment, a finished-but-unreferenced next generation,
    # and a stray temp collection dir: none may change what loads.
    (directory / ".seg-1-abc.tmp").mkdir()
    (directory / ".seg-1-abc.tmp" / "vectors.npy").write_bytes(b"garbage")
    shutil.copytree(directory / "seg-0", directory / "seg-1")
    (directory / "wal-1.log").write_bytes(b"junk")
    (hot / "tenant_a" / ".docs2-ff.tmp").mkdir()
    reopened = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    assert reopened.collection_names() == ["docs"]
    assert _state(reopened.collection("docs")) == expected
    assert sorted(p.name for p in directory.iterdir()) == [
        "collection.json",
        "manifest.json",
        "seg-0",
        "wal-0.log",
    ]
    reopened.close()


def test_create_get_list_delete_collections(hot: Path, store: TenantStore) -> None:
    info = store.create_collection(_spec("b-docs", dim=3, metric="ip"))
    assert info["name"] == "b-docs" and info["vector_count"] == 0 and info["index"] == "flat"
    assert info["created_at"].endswith("Z") and "hnsw" not in info
    store.create_collection(_spec("a-docs", dim=3))
    with pytest.raises(StoreError) as err:
        store.create_collection(_spec("a-docs", dim=3))
    assert err.value.code == ErrorCode.CONFLICT
    assert err.value.message == "collection 'a-docs' already exists"
    assert [c["name"] for c in store.list_collections()] == ["a-docs", "b-docs"]
    held = store.collection("a-docs")
    store.delete_collection("a-docs")
    with pytest.raises(StoreError) as err:
        held.fetch(["x"])
    assert err.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(StoreError) as err:
        store.delete_collection("a-docs")
    assert err.value.message == "collection 'a-docs' not found"
    assert sorted(p.name for p in (hot / "tenant_a").iterdir()) == [".lock", "b-docs"]


def test_usage_counts_collections_vectors_and_bytes(store: TenantStore) -> None:
    assert store.usage() == {"collections": 0, "vectors": 0, "bytes": 0}
    store.create_collection(_spec("one", dim=4))
    store.create_collection(_spec("two", dim=4))
    _fill(store.collection("one"), 1, 5)
    _fill(store.collection("two"), 2, 7)
    usage = store.usage()
    assert usage["collections"] == 2 and usage["vectors"] == 12
    assert usage["bytes"] > 12 * 4 * 4


def test_second_owner_of_a_tenant_is_refused(hot: Path, store: TenantStore) -> None:
    with pytest.raises(StoreError) as err:
        TenantStore.open(hot, "tenant_a", SMALL_WAL)
    assert err.value.code == ErrorCode.UNAVAILABLE
    store.close()
    TenantStore.open(hot, "tenant_a", SMALL_WAL).close()


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "", "A", "-x", ".hidden", "x" * 64, 5])
def test_path_traversal_collection_names_are_refused(hot: Path, store: TenantStore, name) -> None:
    with pytest.raises(StoreError) as err:
        store.collection(name)
    assert err.value.code == ErrorCode.INVALID
    with pytest.raises(StoreError):
        store.create_collection(_spec(name))  # type: ignore[arg-type]
    assert sorted(p.name for p in (hot / "tenant_a").iterdir()) == [".lock"]


@pytest.mark.parametrize("tenant", ["../evil", "..", "a/b", "", "Tenant", "x-y", "x" * 65])
def test_path_traversal_tenant_ids_are_refused(hot: Path, tenant: str) -> None:
    with pytest.raises(StoreError) as err:
        TenantStore.open(hot, tenant, SMALL_WAL)
    assert err.value.code == ErrorCode.INVALID
    assert not hot.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"index": "hnsw", "hnsw": {"m": 2}}, "hnsw.m must be an integer from 4 to 128"),
        ({"hnsw": {"m": 16}}, "hnsw parameters are only valid for an hnsw index"),
        ({"index": "hnsw", "hnsw": {"ef": 1}}, "hnsw must be an object with m and ef_construction"),
        ({"index": "ivf"}, "index must be one of flat, hnsw"),
        ({"metric": "dot"}, "metric must be one of cosine, l2, ip"),
        ({"dimension": 0}, "dimension must be between 1 and 65536"),
        ({"dimension": "8"}, "dimension must be an integer"),
    ],
)
def test_bad_collection_definitions_are_invalid(args: dict, message: str) -> None:
    base = {"collection": "docs", "dimension": 8, "metric": "l2", "index": "flat"}
    with pytest.raises(StoreError) as err:
        parse_collection_spec({**base, **args})
    assert err.value.code == ErrorCode.INVALID and err.value.message == message


def test_bad_vectors_are_refused_and_change_nothing(store: TenantStore) -> None:
    store.create_collection(_spec(dim=4))
    coll = store.collection("docs")
    with pytest.raises(StoreError) as err:
        coll.upsert(["a"], [None], np.ones((1, 3), np.float32))
    assert err.value.code == ErrorCode.INVALID
    assert "expects dimension 4, got 3" in err.value.message
    bad = np.ones((1, 4), np.float32)
    bad[0, 1] = np.nan
    with pytest.raises(StoreError):
        coll.upsert(["a"], [None], bad)
    with pytest.raises(StoreError):
        coll.query(np.ones((1, 5), np.float32), 3, False, False)
    assert coll.vector_count == 0
    assert (coll.directory / "wal-0.log").stat().st_size == 0


def test_interrupted_tenant_delete_is_finished_on_next_open(hot: Path) -> None:
    ours = hot / f".trash-tenant_a-{'a' * 32}"
    theirs = hot / f".trash-tenant_ab-{'b' * 32}"
    for leftover in (ours, theirs):
        (leftover / "docs").mkdir(parents=True)
    TenantStore.open(hot, "tenant_a", SMALL_WAL).close()
    assert not ours.exists()
    assert theirs.exists()


def test_delete_everything_removes_the_tenant_directory(hot: Path, store: TenantStore) -> None:
    store.create_collection(_spec())
    _fill(store.collection("docs"), 1, 5)
    store.delete_everything()
    assert list(hot.iterdir()) == []
    with pytest.raises(StoreError) as err:
        store.list_collections()
    assert err.value.code == ErrorCode.NOT_OWNER
