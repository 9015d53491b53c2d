"""The table's row <-> graph node links stay right through every kind of change.

A random mix of upserts (new ids and overwrites), deletes, graph insertion steps,
rebuilds, compactions, saves and reopenings (with the index saved on close, or an
older one left in place) runs
against a plain dict of what each id should hold; after each step every live id must
fetch its own value and be its own nearest neighbour through the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.collection import INDEX_FILE, Collection
from workers.collection_spec import parse_collection_spec
from workers.graph_rows import GraphRows
from workers.maintenance import Maintenance
from workers.tenant_store import TenantStore

from .conftest import SMALL_WAL

DIM = 8


def _open(hot: Path, quiet: Maintenance, metric: str) -> tuple[TenantStore, Collection]:
    store = TenantStore.open(hot, "tenant_g", SMALL_WAL, maintenance=quiet)
    if "g" not in {c["name"] for c in store.list_collections()}:
        spec = {"collection": "g", "dimension": DIM, "metric": metric, "index": "hnsw"}
        store.create_collection(parse_collection_spec({**spec, "hnsw": {"m": 8}}))
    return store, store.collection("g")


def _check(coll: Collection, model: dict[str, np.ndarray]) -> None:
    assert coll.vector_count == len(model)
    if not model:
        return
    ids = sorted(model)
    found, _, values = coll.fetch(ids)
    assert found == ids
    np.testing.assert_array_equal(values, np.stack([model[i] for i in ids]))
    queries = np.stack([model[i] for i in ids])
    results, _ = coll.query(queries, 1, False, False, ef_search=256)
    assert [r["ids"][0] for r in results] == ids
    index = coll.index
    assert index is not None
    assert index.node_count - index.tombstones + index.fresh_count == len(model)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_random_writes_keep_every_id_on_its_own_vector(hot: Path, metric: str) -> None:
    rng = np.random.default_rng(7)
    quiet = Maintenance(autostart=False)
    store, coll = _open(hot, quiet, metric)
    model: dict[str, np.ndarray] = {}
    for step in range(60):
        action = rng.integers(0, 10)
        if action < 4:  # upsert: some new ids, some overwrites
            ids = sorted({f"v{int(i)}" for i in rng.integers(0, 400, size=40)})
            values = rng.standard_normal((len(ids), DIM)).astype(np.float32)
            for j, i in enumerate(ids):  # some overwrites bring the very same value again
                if i in model and rng.random() < 0.3:
                    values[j] = model[i]
            coll.upsert(ids, [None] * len(ids), values)
            model.update(zip(ids, values, strict=True))
        elif action < 6 and model:  # delete some live ids and some unknown ones
            live = sorted(model)
            doomed = [live[int(i)] for i in rng.integers(0, len(live), size=25)] + ["nope"]
            coll.delete(doomed)
            for i in doomed:
                model.pop(i, None)
        elif action == 6:  # part of the graph insertion
            for _ in range(int(rng.integers(1, 4))):
                coll.run_maintenance()
        elif action == 7:
            coll.flush_index()  # every fresh vector in, a rebuild if tombstones are many
        elif action == 8:
            coll.compact()
        else:  # reopen, with the index saved or (as after kill -9) stale or missing
            if step % 2:
                index_file = coll.directory / INDEX_FILE
                stale = index_file.read_bytes() if index_file.exists() else None
                store.close()
                if stale is None:
                    index_file.unlink(missing_ok=True)
                else:
                    index_file.write_bytes(stale)
            else:
                store.close()
            store, coll = _open(hot, quiet, metric)
        _check(coll, model)
    store.close()


def test_links_follow_rows_that_move(hot: Path) -> None:
    rows = GraphRows()
    rows.add_nodes(np.array([0, 1, 2, -1], dtype=np.int64))
    assert (rows.nodes, rows.linked) == (4, 3)
    rows.unlink(0)  # row 0 deleted: node 0 is a tombstone, row 2 moves into the hole
    rows.move(2, 0)
    assert rows.rows_of_nodes(np.arange(4)).tolist() == [-1, 1, 0, -1]
    assert rows.node_of_rows(np.arange(3)).tolist() == [2, 1, -1]
    rows.renumber(np.array([1, 2], dtype=np.int64))  # rebuilt from the live nodes
    assert rows.rows_of_nodes(np.arange(3)).tolist() == [1, 0, -1]
    assert (rows.nodes, rows.linked) == (2, 2)
