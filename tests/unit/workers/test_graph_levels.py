"""Graph levels drawn when a vector is put, preset for FAISS, and the nodes above level
0 held back in quiet spells (HOLD_UPPER_BATCH): same distribution, nothing stuck."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

import workers.hnsw_index as hnsw_index
from workers.hnsw_index import HOLD_UPPER_BATCH, HnswIndex
from workers.vector_table import VectorTable

DIM = 8


def _index(count: int, m: int = 16, seed: int = 3) -> tuple[VectorTable, HnswIndex]:
    table = VectorTable(DIM, normalize=False)
    index = HnswIndex(table, "l2", m, 32)
    _put(table, index, [f"v{i}" for i in range(count)], seed)
    return table, index


def _put(table: VectorTable, index: HnswIndex, ids: list[str], seed: int) -> None:
    vectors = np.random.default_rng(seed).standard_normal((len(ids), DIM), dtype=np.float32)
    table.put(ids, [None] * len(ids), vectors)
    index.put(ids, vectors)


def _step(index: HnswIndex, limit: int, hold: bool) -> tuple[list[str], np.ndarray]:
    ids, versions, vectors, levels = index.take_fresh(limit, hold)
    if ids:
        base = index.add_to_graph(vectors, 2 if hold else 1, levels)
        index.settle(ids, versions, base)
        graph_levels = faiss.vector_to_array(index._graph.hnsw.levels)
        assert (graph_levels[base : base + len(ids)] == levels).all()  # FAISS kept ours
    return ids, levels


def _check_upper(index: HnswIndex) -> None:
    fresh = set(index._fresh.ids[: index.fresh_count])
    assert set(index._upper) <= fresh
    assert all(level > 1 for level in index._upper.values())


def test_levels_follow_faiss_own_distribution() -> None:
    _, index = _index(0, m=16)
    probas = faiss.vector_to_array(index._graph.hnsw.assign_probas)
    drawn = index._draw_levels(200_000)
    ours = np.bincount(drawn - 1, minlength=len(probas)) / len(drawn)
    assert drawn.min() == 1 and drawn.max() <= len(probas)
    assert np.abs(ours - probas).max() < 0.003
    # and FAISS, drawing its own for 20,000 nodes, gives the same shares
    graph = index.new_graph()
    graph.add(np.random.default_rng(0).standard_normal((20_000, DIM), dtype=np.float32))
    theirs = np.bincount(faiss.vector_to_array(graph.hnsw.levels) - 1) / 20_000
    assert abs(theirs[0] - ours[0]) < 0.006 and 0.9 < ours[0] < 0.96  # 1 - 1/M


def test_quiet_steps_hold_upper_nodes_back_until_the_end() -> None:
    table, index = _index(8000)
    upper = len(index._upper)
    assert 300 < upper < HOLD_UPPER_BATCH  # about 1/M of them
    steps = []
    while index.fresh_count:
        steps.append(_step(index, 1000, hold=True))
        _check_upper(index)
    *before, last = steps
    assert all((levels == 1).all() and len(ids) == 1000 for ids, levels in before)
    assert int((last[1] > 1).sum()) == upper and len(last[0]) <= 1000
    assert index.node_count == table.count == 8000 and index.tombstones == 0


def test_a_quiet_step_sends_the_held_nodes_first_once_enough_wait() -> None:
    table, index = _index(0)
    sizes, flushed = [], 0
    for batch in range(12):  # an import arriving while the graph is built
        _put(table, index, [f"b{batch}-{i}" for i in range(3000)], seed=batch)
        ids, levels = _step(index, 2500, hold=True)
        sizes.append(len(ids))
        upper = int((levels > 1).sum())
        # held nodes go first, and only when HOLD_UPPER_BATCH of them waited
        assert (levels[:upper] > 1).all() and (levels[upper:] == 1).all()
        flushed += upper > 0
        assert len(index._upper) < HOLD_UPPER_BATCH + 3000
        _check_upper(index)
    assert flushed >= 1 and max(sizes) == 2500
    while index.fresh_count:
        _step(index, 2500, hold=True)
    assert index.node_count == table.count == 36_000


def test_busy_steps_take_fresh_vectors_in_order() -> None:
    _, index = _index(500)
    order = index._fresh.ids[:64]
    drawn = [index._upper.get(i, 1) for i in order]
    assert max(drawn) > 1  # the upper ones are not held back here
    ids, levels = _step(index, 64, hold=False)
    assert ids == order and levels.tolist() == drawn


def test_replaced_and_removed_vectors_keep_the_held_set_true() -> None:
    table, index = _index(6000)
    rng = np.random.default_rng(5)
    for round_ in range(8):
        ids, versions, vectors, levels = index.take_fresh(700, hold=True)
        base = index.add_to_graph(vectors, 2, levels)
        # meanwhile some taken and some waiting vectors are replaced or deleted
        some = rng.choice(table.count, 200, replace=False)
        names = [table.ids[r] for r in some.tolist()]
        _put(table, index, names[:100], seed=100 + round_)
        table.remove(names[100:])
        index.remove(names[100:])
        index.settle(ids, versions, base)
        _check_upper(index)
    steps = 0
    while index.fresh_count:
        _step(index, 700, hold=True)
        _check_upper(index)
        steps += 1
        assert steps < 100
    assert index.node_count - index.tombstones == table.count
    assert not index._upper


def test_a_failed_add_leaves_no_preset_levels_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    _, index = _index(300)
    _, _, vectors, levels = index.take_fresh(100, hold=False)

    def fail(graph: object, vectors: np.ndarray, threads: int) -> None:
        raise MemoryError

    with monkeypatch.context() as patched:
        patched.setattr(hnsw_index, "add_with_threads", fail)
        with pytest.raises(MemoryError):
            index.add_to_graph(vectors, 1, levels)
    graph = index._graph
    assert graph.hnsw.levels.size() == graph.ntotal == 0
    # FAISS would abort the process here if the levels and nodes disagreed
    while index.fresh_count:
        _step(index, 100, hold=False)
    assert index.node_count == 300
