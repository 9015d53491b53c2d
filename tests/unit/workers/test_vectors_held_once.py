"""An HNSW collection holds its vectors once: the index serves them to the table.

Once loaded, the table of an HNSW collection keeps no search vectors (for l2/ip no
vectors at all; for cosine only the original values), and every read of values
(fetch, list, query values, the segment written by compaction, a reload) still
gives exactly what was written, through inserts into the graph, replacements,
deletes (rows move), graph rebuilds and reloads.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from workers.collection import Collection
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.maintenance import Maintenance
from workers.protocol import ErrorCode
from workers.read_write_lock import WouldBlock
from workers.segment import RowBlocks, write_npy
from workers.tenant_store import TenantStore

from .conftest import SMALL_WAL

DIM = 16


def _make(store: TenantStore, metric: str) -> Collection:
    spec = {"collection": "h", "dimension": DIM, "metric": metric, "index": "hnsw"}
    store.create_collection(parse_collection_spec(spec))
    return store.collection("h")


def _check(coll: Collection, expected: dict[str, np.ndarray]) -> None:
    ids = sorted(expected)
    found, _, values = coll.fetch(ids)
    assert found == ids
    assert np.array_equal(values, np.stack([expected[i] for i in ids]))
    listed, _, list_values, _ = coll.list_page(None, 1000, None, False, True)
    assert listed is not None and list_values is not None
    assert np.array_equal(list_values, np.stack([expected[i] for i in listed]))
    queries = np.stack([expected[i] for i in ids[:7]])
    results, values = coll.query(queries, 3, False, True)
    assert values is not None
    flat = [vid for r in results for vid in r["ids"]]
    assert np.array_equal(values, np.stack([expected[i] for i in flat]))
    snapshot = coll._table.snapshot()
    want = np.stack([expected[i] for i in snapshot.ids])
    assert np.array_equal(_whole(snapshot.vectors), want)
    # As compaction writes it: the bytes np.save writes for the matrix.
    written, saved = io.BytesIO(), io.BytesIO()
    write_npy(written, snapshot.vectors)
    np.save(saved, want, allow_pickle=False)
    assert written.getvalue() == saved.getvalue()


def _whole(vectors: np.ndarray | RowBlocks) -> np.ndarray:
    """The matrix of a snapshot; an index's blocks read a few rows at a time (blocks
    mixing graph and fresh rows, and rows whose nodes are in order or not)."""
    if isinstance(vectors, np.ndarray):
        return vectors
    return np.concatenate([block.copy() for block in vectors.blocks(7)])


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_values_stay_exact_while_held_once(store: TenantStore, metric: str) -> None:
    quiet = Maintenance(autostart=False)  # the test moves vectors into the graph itself
    store._options = type(store._options)(SMALL_WAL, 20_000, quiet)
    rng = np.random.default_rng(4)
    coll = _make(store, metric)
    expected: dict[str, np.ndarray] = {}

    def upsert(ids: list[str]) -> None:
        vectors = (rng.standard_normal((len(ids), DIM)) * 3).astype(np.float32)
        coll.upsert(ids, [{"n": i} for i in range(len(ids))], vectors)
        expected.update(zip(ids, vectors, strict=True))

    upsert([f"v{i}" for i in range(300)])
    assert coll._table.detached
    _check(coll, expected)  # all in the fresh buffer
    coll.flush_index()
    _check(coll, expected)  # all in the graph
    upsert([f"v{i}" for i in range(0, 300, 7)] + [f"w{i}" for i in range(20)])  # some fresh
    gone = [f"v{i}" for i in range(1, 300, 2)]
    assert coll.delete(gone) == len(gone)  # rows move, nodes become tombstones
    for vid in gone:
        del expected[vid]
    _check(coll, expected)
    coll.flush_index()  # past 25 % tombstones: the graph is rebuilt
    assert coll.index is not None and coll.index.tombstones == 0
    _check(coll, expected)
    coll.compact()  # a new segment, written from the index's vectors
    directory, options = coll.directory, store._options
    coll.close(StoreError(ErrorCode.UNAVAILABLE, "closed"))
    again = Collection.load(directory, options)
    _check(again, expected)
    held = again._table.memory_bytes
    values_bytes = len(expected) * DIM * 4
    # l2/ip: no vectors in the table; cosine: the original values only
    assert held <= (values_bytes * 1.05 if metric == "cosine" else 0)
    again.close(StoreError(ErrorCode.UNAVAILABLE, "closed"))


def test_reading_values_without_waiting_refuses_while_the_graph_is_written(
    store: TenantStore,
) -> None:
    quiet = Maintenance(autostart=False)
    store._options = type(store._options)(SMALL_WAL, 20_000, quiet)
    coll = _make(store, "l2")
    vectors = np.arange(40 * DIM, dtype=np.float32).reshape(40, DIM)
    coll.upsert([f"v{i}" for i in range(40)], [None] * 40, vectors)
    coll.flush_index()
    assert coll.index is not None
    table = coll._table
    # as a graph insertion step holds the graph
    with coll.index._graph_lock.writing(), pytest.raises(WouldBlock):
        table.values(np.arange(3), wait=False)
    assert np.array_equal(table.values(np.arange(3), wait=False), vectors[:3])
