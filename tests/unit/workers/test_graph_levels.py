"""Graph levels drawn when a vector is put, preset for FAISS, and the nodes above level
0 held back in quiet spells (HOLD_UPPER_BATCH): same distribution, nothing stuck. Steps
take fresh vectors at random, so vectors arriving grouped build a graph as good as
shuffled ones (ORDER_SEED)."""

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


def test_busy_steps_take_fresh_vectors_at_random_with_their_levels() -> None:
    table, index = _index(500)
    drawn = {i: index._upper.get(i, 1) for i in index._fresh.ids[:500]}
    ids, _, vectors, levels = index.take_fresh(64, hold=False)
    assert len(set(ids)) == 64 and set(ids) <= set(drawn)
    assert ids != index._fresh.ids[:64]  # not the first 64 to arrive
    assert levels.tolist() == [drawn[i] for i in ids]  # the upper ones not held back
    rows = [table.row_of(i) for i in ids]
    assert np.array_equal(vectors, table.search_rows(np.array(rows)))
    positions = sorted(int(i[1:]) for i in ids)  # spread over the whole buffer
    assert positions[0] < 100 and positions[-1] >= 400


def test_quiet_steps_take_level0_vectors_from_the_whole_buffer() -> None:
    _, index = _index(8000)
    ids, _, _, levels = index.take_fresh(1000, hold=True)
    assert len(ids) == 1000 and (levels == 1).all()
    positions = np.array([int(i[1:]) for i in ids])  # arrival order = buffer row here
    assert positions.min() < 200 and positions.max() > 7800
    assert 3500 < positions.mean() < 4500  # no end of the buffer favoured


def _bulk_import_recall(order: str) -> float:
    """Recall@10 (ef 16) of a graph built in busy steps of 100 from a bulk import of 30
    groups of 200 vectors that arrive group by group (as documents' chunks do) or
    shuffled; the whole import is fresh before the first step."""
    dim, count = 32, 6000
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((30, dim), dtype=np.float32) * 3
    points = np.repeat(centres, 200, axis=0) + rng.standard_normal((count, dim), np.float32)
    if order == "shuffled":
        points = points[rng.permutation(count)]
    table = VectorTable(dim, normalize=False)
    index = HnswIndex(table, "l2", 16, 32)
    ids = [str(i) for i in range(count)]
    table.put(ids, [None] * count, points)
    index.put(ids, points)
    while index.fresh_count:
        _step(index, 100, hold=False)
    queries = points[rng.choice(count, 300, replace=False)]
    queries += 0.3 * rng.standard_normal(queries.shape, np.float32)
    exact = faiss.IndexFlatL2(dim)
    exact.add(points)
    _, truth = exact.search(queries, 10)
    graph = index._graph
    graph.hnsw.efSearch = 16
    _, found = graph.search(queries, 10)
    rows = index._nodes.rows_of_nodes(found.ravel()).reshape(found.shape)
    hits = 0
    for q in range(len(queries)):  # node -> table row -> id: the position in ``points``
        names = {int(table.ids[r]) for r in rows[q].tolist() if r >= 0}
        hits += len(names & set(truth[q].tolist()))
    return hits / truth.size


def test_a_grouped_bulk_import_builds_as_good_a_graph_as_a_shuffled_one() -> None:
    # Taken in arrival order, this grouped import reached 0.82 against 0.98 shuffled.
    grouped, shuffled = _bulk_import_recall("grouped"), _bulk_import_recall("shuffled")
    assert grouped >= shuffled - 0.02 and grouped >= 0.95, (grouped, shuffled)


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
