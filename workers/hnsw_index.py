"""The HNSW index of one collection: a FAISS graph, a fresh buffer, and tombstones.

Vectors enter the *fresh* buffer when their upsert is acknowledged and are searched
there exactly; the worker's maintenance thread later moves them into the graph in
small chunks (``take_fresh`` -> ``add_to_graph`` -> ``settle``), chosen at random
from the buffer (see ORDER_SEED), at graph levels drawn when they were put (nodes
above level 0 held back in quiet spells, see HOLD_UPPER_BATCH). A graph node whose
vector was replaced or deleted is a *tombstone*: it stays in the graph (FAISS HNSW
cannot remove nodes) but is excluded from every search by an ``IDSelectorBitmap`` of
live nodes, and disappears when the graph is rebuilt from its live nodes. Which node
serves which row of the collection's table is kept by the table (``GraphRows``), so
no per-id Python object stands for a graph node.

Locking: callers hold the collection's row lock (shared for ``search`` and
``take_fresh``, exclusive for ``put``, ``remove``, ``settle`` and ``swap_graph``).
The graph itself has its own lock, held exclusively only while FAISS adds nodes, so
an upsert never waits for graph insertion.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import orjson

from workers.faiss_runtime import faiss
from workers.flat_index import exact_search, merge_results
from workers.graph_rows import GraphRows
from workers.integrity import ChecksummingWriter
from workers.read_write_lock import ReadWriteLock, WouldBlock
from workers.vector_table import VectorTable

DEFAULT_M = 32
DEFAULT_EF_CONSTRUCTION = 200
# Measured: recall@10 >= 0.95 at 64 on clustered 384-d data (see the worker report).
DEFAULT_EF_SEARCH = 64
INSERT_CHUNK = 32  # vectors per graph insertion step (~20-40 ms of exclusive graph lock)
# While no reads run, steps use every core and grow: the first takes this many, each
# next one twice as many (up to INSERT_CHUNK_IDLE_MAX) as long as the bigger step is
# expected, at the last one's pace, to hold the graph under IDLE_STEP_S. FAISS (1.15)
# inserts each add() call in batches that start at one vector and double, and only
# batches over 100 run on several threads, so a 256-vector add keeps half of its work
# on one core: at 30k x 384, two threads took 9.4 s with steps of 256, 7.3 s of 1,024,
# 6.9 s of 2,048 and 5.8 s in one call (one thread: 11.2 s). The cost: a read arriving
# in such a quiet spell waits for the step under way, at most about IDLE_STEP_S; once
# reads run, steps are INSERT_CHUNK on one thread again.
INSERT_CHUNK_IDLE = 256
INSERT_CHUNK_IDLE_MAX = 4096
IDLE_STEP_S = 0.4
# Each fresh vector's HNSW level is drawn when it is put (FAISS's own distribution) and
# given to FAISS as a preset level. The same FAISS inserts each level of an add() call
# separately, every one starting with batches of 1, 1, 2, 4, ... vectors on one core, so
# the few nodes above level 0 of a quiet-spell step (about 1/M of it) kept a core idle
# for much of each step. In quiet spells they are held back until this many wait and
# go in together: measured with ``benchmarks.graph_steps --hold-upper`` at steps of
# 2,500, 168 against 183 ms per 1,000 vectors (threads busy 0.89 against 0.82); nine
# builds of 50k clustered vectors in such steps gave recall@10 (ef 32) 0.9454 against
# 0.9450 with FAISS drawing its own. Held nodes only wait longer in the fresh buffer,
# which is searched exactly.
HOLD_UPPER_BATCH = 1000
LEVEL_SEED = 12345
# Each step takes its vectors at random from the fresh buffer, not in the order they
# came. Data often arrives grouped (a document's chunks one after another, one source
# after the next); inserted in that order, each step's nodes are all alike and link
# mostly among themselves, and the graph keeps fewer of the links between regions
# that a search needs. ``benchmarks.ingest_build --grouped`` (50k x 128, 100 clusters
# uploaded cluster by cluster): recall@10 at ef 64 0.988 in arrival order against
# raw FAISS's 0.996 (FAISS shuffles the vectors of one add call); now 0.997. On the
# peers' real embeddings in corpus order (``--peers --count 30000``, three builds each)
# recall@10 at ef 128 went from 0.9950-0.9958 to 0.9958-0.9962 (raw FAISS 0.9967) in
# the same build time (7.7-8.1 s against 7.5-9.0 s).
ORDER_SEED = 67890
# A filter matching at most this many rows (or under a tenth of them) is answered by an
# exact scan of just those rows: cheaper than HNSW and exact.
EXACT_FILTER_MAX_ROWS = 8192
# A graph search compares about ef x 2M vectors at the base layer (each expanded
# candidate's neighbours), plus a little on the way down the upper layers: charged as
# (ef + this) x 2M. Measured with faiss.cvar.hnsw_stats on 10k and 100k x 384 random
# unit vectors, M=16: 620-680 comparisons per query at ef 16 (charged 1,024), 1,800-2,160
# at 64 (2,560), 5,000-7,300 at 256 (8,704).
GRAPH_COST_EF_MARGIN = 16
REBUILD_TOMBSTONE_FRACTION = 0.25
# The fresh buffer's default bound: 64 MiB of vectors, between 20,000 and 50,000 of
# them. Unfiltered, it is scanned in place (about 1 ms of CPU per query at 20,000 x
# 384), so a bulk import rarely fills it and meets backpressure (BUSY) while the graph
# catches up; it is a transient copy, given back as the graph takes it in.
FRESH_BYTES = 64 * 1024 * 1024
FRESH_MIN, FRESH_MAX = 20_000, 50_000
REBUILD_MIN_TOMBSTONES = 64

_MAGIC = b"VPHNSW1\0"
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _exact_for_filter(matches: int, rows: int) -> bool:
    """Whether a filter matching ``matches`` of ``rows`` is answered by an exact scan of
    just those rows (cheaper than the graph, and exact)."""
    return matches <= EXACT_FILTER_MAX_ROWS or 10 * matches < rows


class CorruptIndexError(ValueError):
    """A persisted index file that cannot be used (it is rebuilt instead)."""


def fresh_limit_for(dimension: int) -> int:
    """The default bound of a collection's fresh buffer, in vectors."""
    return min(max(FRESH_BYTES // (4 * max(dimension, 1)), FRESH_MIN), FRESH_MAX)


def _faiss_metric(metric: str) -> int:
    lib = faiss()
    return int(lib.METRIC_L2 if metric == "l2" else lib.METRIC_INNER_PRODUCT)


def subset_search(
    matrix: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over ``matrix[rows]``, answered as rows of ``matrix``."""
    scores, local = exact_search(matrix[rows], queries, k, metric)
    return scores, rows[local] if len(rows) else local


def table_search(
    table: VectorTable, rows: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the table's ``rows`` (their search vectors), answered as rows."""
    scores, local = exact_search(table.search_rows(rows), queries, k, metric)
    return scores, rows[local] if len(rows) else local


class HnswIndex:
    """Graph + fresh buffer + live bitmap; answers in rows of the collection's table."""

    def __init__(
        self,
        table: VectorTable,
        metric: str,
        m: int,
        ef_construction: int,
        fresh_limit: int | None = None,
    ) -> None:
        """The index of ``table``'s rows (which keeps the row <-> node links from now on)."""
        dimension = table.dimension
        self.dimension = dimension
        self.metric = metric
        self.m = m
        self.ef_construction = ef_construction
        self.fresh_limit = fresh_limit_for(dimension) if fresh_limit is None else fresh_limit
        self._graph = self.new_graph()
        self._graph_lock = ReadWriteLock()
        self._table = table
        self._nodes = GraphRows()
        table.track_graph(self._nodes)
        self._fresh = VectorTable(dimension, normalize=False)
        self._fresh_version: dict[str, int] = {}
        # Fresh ids drawn above level 0 -> their level (1-based, as FAISS keeps it);
        # every other fresh id goes to level 0.
        self._upper: dict[str, int] = {}
        self._level_cdf = level_cdf(self._graph)
        self._rng = np.random.default_rng(LEVEL_SEED)
        self._order_rng = np.random.default_rng(ORDER_SEED)  # take_fresh's (one thread)
        self._seq = 0
        self.dirty = False  # the graph changed since it was last saved
        # Search parameters without a selector, by efSearch: FAISS only reads them, so
        # every search (and thread) may share one instead of building its own.
        self._plain_params: dict[int, Any] = {}

    # ---- writes (row lock held exclusively) -------------------------------------

    def put(self, ids: list[str], search_vectors: np.ndarray) -> None:
        """New or replaced vectors go fresh (the table's put has already made the nodes
        of replaced ones tombstones), each with a newly drawn graph level."""
        upper = self._upper
        for vector_id in ids:
            self._seq += 1
            self._fresh_version[vector_id] = self._seq
            upper.pop(vector_id, None)
        levels = self._draw_levels(len(ids))
        for at in np.flatnonzero(levels > 1).tolist():
            upper[ids[at]] = int(levels[at])
        self._fresh.put(ids, [None] * len(ids), search_vectors)

    def _draw_levels(self, count: int) -> np.ndarray:
        return draw_levels(self._level_cdf, self._rng, count)

    def remove(self, ids: list[str]) -> None:
        """Deleted vectors leave the fresh buffer (the table's remove has already made
        their nodes tombstones)."""
        gone = [i for i in ids if self._fresh_version.pop(i, None) is not None]
        for vector_id in gone:
            self._upper.pop(vector_id, None)
        self._fresh.remove(gone)

    # ---- state --------------------------------------------------------------------

    @property
    def fresh_count(self) -> int:
        """Vectors acknowledged but not yet in the graph."""
        return self._fresh.count

    @property
    def node_count(self) -> int:
        """Nodes in the graph, tombstones included."""
        return self._nodes.nodes

    @property
    def tombstones(self) -> int:
        """Graph nodes whose vector is no longer live."""
        return self._nodes.nodes - self._nodes.linked

    def admits(self, new_vectors: int) -> bool:
        """Whether the fresh buffer may take ``new_vectors`` more (backpressure)."""
        return self._fresh.count == 0 or self._fresh.count + new_vectors <= self.fresh_limit

    @property
    def memory_bytes(self) -> int:
        """Graph vectors and links, the row <-> node arrays, plus the fresh buffer."""
        per_node = self.dimension * 4 + self.m * 2 * 4 * 1.1 + 64
        nodes = self._nodes
        return int(nodes.nodes * per_node + nodes.nbytes + self._fresh.memory_bytes)

    def needs_rebuild(self) -> bool:
        """Whether tombstones are worth folding away by rebuilding the graph."""
        dead = self.tombstones
        return dead >= REBUILD_MIN_TOMBSTONES and dead > REBUILD_TOMBSTONE_FRACTION * max(
            self.node_count, 1
        )

    # ---- search (row lock held shared) ----------------------------------------------

    def search_cost(
        self, queries: int, k: int, ef_search: int | None, eligible: int, rows: int
    ) -> int:
        """Vectors ``search`` compares for ``queries`` query vectors, ``eligible`` of the
        table's ``rows`` matching (the cost a query reports, see workers.work_budget).

        A filter answered exactly costs its matches per query; a graph search costs
        about (ef + margin) x 2M comparisons, more when a selector makes it walk past
        excluded nodes (in proportion to the share excluded), never more than the graph,
        plus the fresh buffer's exact scan. Not counted: the rare exact fallback for a
        query the graph answers short.
        """
        if eligible < rows and _exact_for_filter(eligible, rows):
            return queries * eligible
        ef = max(ef_search or DEFAULT_EF_SEARCH, k)
        walk = (ef + GRAPH_COST_EF_MARGIN) * 2 * self.m
        if 0 < eligible < rows:
            walk = walk * rows // eligible
        return queries * (min(self.node_count, walk) + self._fresh.count)

    def search(
        self,
        table: VectorTable,
        queries: np.ndarray,
        k: int,
        mask: np.ndarray | None,
        ef_search: int | None,
        wait: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k table rows per query among live rows (and ``mask``), best first.

        ``wait=False``: WouldBlock instead of waiting for the graph or scanning exactly.
        """
        if mask is not None:
            match_rows = np.flatnonzero(mask)
            if _exact_for_filter(len(match_rows), table.count):
                return table_search(table, match_rows, queries, k, self.metric)
        q = queries.shape[0]
        parts = [self._search_graph(table, queries, k, mask, ef_search or DEFAULT_EF_SEARCH, wait)]
        if self._fresh.count:
            parts.append(self._search_fresh(table, queries, k, mask))
        scores, rows = parts[0] if len(parts) == 1 else merge_results(parts, k, self.metric)
        # HNSW may come back short when the selector excludes much of the graph; the
        # contract is top_k whenever that many match, so those queries go exact.
        eligible = table.count if mask is None else int(mask.sum())
        short = np.flatnonzero((rows >= 0).sum(axis=1) < min(k, eligible))
        if short.size and not wait:
            raise WouldBlock  # the exact fallback below is a full scan
        if short.size:
            every = np.arange(table.count) if mask is None else np.flatnonzero(mask)
            s2, r2 = table_search(table, every, queries[short], k, self.metric)
            # The graph answers min(k, its live nodes) columns, which can be narrower
            # than the exact answer (more live rows than graphed ones): widen to fit.
            width = max(scores.shape[1], s2.shape[1])
            if width > scores.shape[1]:
                grow = ((0, 0), (0, width - scores.shape[1]))
                scores, rows = np.pad(scores, grow), np.pad(rows, grow, constant_values=-1)
            pad = width - s2.shape[1]
            scores[short] = np.pad(s2, ((0, 0), (0, pad)))
            rows[short] = np.pad(r2, ((0, 0), (0, pad)), constant_values=-1)
        return scores[:q], rows[:q]

    def search_many(
        self,
        table: VectorTable,
        stacked: np.ndarray,
        parts: list[np.ndarray],
        k: int,
        ef_search: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` of several requests' unfiltered queries, with one graph search.

        Each request's answer is exactly what ``search`` gives it alone: the graph
        answers every query independently, and the fresh buffer is scanned per request
        (an exact scan's arithmetic depends on how many queries it takes at once).
        Returns (scores, rows): a query answered with fewer than min(k, table.count)
        rows (-1 padded) is one the graph answered short, which ``search`` would finish
        with an exact scan (not done here). ``stacked`` holds the requests' queries in
        one array, ``parts`` the same rows request by request.
        """
        graph = self._search_graph(table, stacked, k, None, ef_search or DEFAULT_EF_SEARCH, False)
        if self._fresh.count:
            fresh = [self._search_fresh(table, q, k, None) for q in parts]
            scores_f = fresh[0][0] if len(fresh) == 1 else np.concatenate([f[0] for f in fresh])
            rows_f = fresh[0][1] if len(fresh) == 1 else np.concatenate([f[1] for f in fresh])
            scores, rows = merge_results([graph, (scores_f, rows_f)], k, self.metric)
        else:
            scores, rows = graph
        return scores, rows

    def _search_fresh(
        self, table: VectorTable, queries: np.ndarray, k: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the fresh buffer, as table rows.

        Unfiltered, the buffer is scanned in place and only the winners' ids are looked
        up: no copy of the buffer and no id lookup per fresh vector on each query.
        """
        fresh, fresh_ids = self._fresh.search_matrix(), self._fresh.ids
        if mask is None:
            scores, local = exact_search(fresh, queries, k, self.metric)
            flat = local.ravel().tolist()
            rows = np.fromiter(
                (-1 if j < 0 else table.row_of(fresh_ids[j]) for j in flat),
                dtype=np.int64,
                count=len(flat),
            )
            return scores, rows.reshape(local.shape)
        fresh_rows = np.fromiter(
            (table.row_of(i) for i in fresh_ids), dtype=np.int64, count=self._fresh.count
        )
        keep = np.flatnonzero(mask[fresh_rows])
        scores, local = subset_search(fresh, keep, queries, k, self.metric)
        return scores, fresh_rows[local] if local.size else local

    def _search_graph(
        self,
        table: VectorTable,
        queries: np.ndarray,
        k: int,
        mask: np.ndarray | None,
        ef: int,
        wait: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        q = queries.shape[0]
        lock = self._graph_lock
        lock.acquire_read(wait)
        try:
            n = self._graph.ntotal
            allowed: np.ndarray | None = None
            links = self._nodes
            if mask is None and links.linked == n:
                count = n  # no tombstones and nothing half-inserted: no selector needed
            elif mask is None:
                allowed = links.live_mask(n)
            else:
                allowed = np.zeros(n, dtype=bool)
                nodes = links.node_of_rows(np.flatnonzero(mask))
                allowed[nodes[(nodes >= 0) & (nodes < n)]] = True
            if allowed is not None:
                count = int(allowed.sum())
            if count == 0:
                return np.zeros((q, 0), np.float32), np.zeros((q, 0), np.int64)
            lib, bitmap = faiss(), None
            if allowed is not None and count < n:
                params = lib.SearchParametersHNSW()
                params.efSearch = max(ef, k)
                bitmap = np.packbits(allowed, bitorder="little")
                params.sel = lib.IDSelectorBitmap(n, lib.swig_ptr(bitmap))
            else:
                params = self._params(max(ef, k))
            width = min(k, count)
            x = np.ascontiguousarray(queries, dtype=np.float32)
            scores = np.empty((q, width), dtype=np.float32)
            nodes_found = np.empty((q, width), dtype=np.int64)
            # FAISS's own search() without its wrapper's checks (done above)
            self._graph.search_c(
                q,
                lib.swig_ptr(x),
                width,
                lib.swig_ptr(scores),
                lib.swig_ptr(nodes_found),
                params,
            )
            del bitmap  # the selector borrowed it until here
        finally:
            lock.release_read()
        # the row lock (held) keeps the links as they were during the search
        return scores, self._nodes.rows_of_nodes(nodes_found)

    def _params(self, ef: int) -> Any:
        params = self._plain_params.get(ef)
        if params is None:
            params = faiss().SearchParametersHNSW()
            params.efSearch = ef
            if len(self._plain_params) < 64:  # ef is the client's: keep the cache small
                self._plain_params[ef] = params
        return params

    def search_vectors(self, rows: np.ndarray, wait: bool = True) -> np.ndarray:
        """The search vectors of the table's ``rows`` from the graph's storage or the fresh
        buffer (the table's VectorSource once detached); row lock held, shared or
        exclusive. ``wait=False``: WouldBlock rather than wait while the graph is being
        added to."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        if not len(rows):
            return out
        nodes = self._nodes.node_of_rows(rows)
        in_graph = nodes >= 0
        if not in_graph.all():
            picked = np.flatnonzero(~in_graph)
            ids, fresh_row = self._table.ids, self._fresh.row_lookup()
            fresh_rows = [fresh_row(ids[r], -1) for r in rows[picked].tolist()]
            if min(fresh_rows) < 0:
                raise KeyError("an id with no vector in the index")
            out[picked] = self._fresh.search_matrix()[fresh_rows]
        if in_graph.any():
            with self._graph_lock.reading(wait):
                out[in_graph] = self._storage()[nodes[in_graph]]  # copied while it is held
        return out

    def stored_rows(self, count: int) -> StoredRows:
        """The search vectors of the table's rows ``0..count-1`` as they stand now, read
        block by block later (for a segment, without a whole copy of the matrix); row
        lock held now. Valid as long as the graph takes no vectors and is not swapped:
        while the caller holds the collection's maintenance lock."""
        nodes = self._nodes.node_of_rows(np.arange(count, dtype=np.int64))
        fresh_at = np.flatnonzero(nodes < 0)
        fresh = self.search_vectors(fresh_at)  # copies: the fresh buffer keeps changing
        return StoredRows(self, nodes, fresh_at, fresh)

    def frozen_storage(self) -> np.ndarray:
        """The graph's storage as an (ntotal, d) view, for a caller holding the
        collection's maintenance lock: no graph step can add to it or replace it then."""
        with self._graph_lock.reading():
            return self._storage()

    def _storage(self) -> np.ndarray:
        # A view of FAISS's own array: valid while the graph lock is held (or nothing
        # can add to the graph), as adding may move the array.
        graph = self._graph
        lib = faiss()
        stored = lib.rev_swig_ptr(
            lib.downcast_index(graph.storage).get_xb(), graph.ntotal * self.dimension
        )
        return stored.reshape(graph.ntotal, self.dimension)

    # ---- graph insertion (maintenance thread) ----------------------------------------

    def take_fresh(
        self, limit: int, hold: bool = False
    ) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
        """Up to ``limit`` fresh vectors to insert, chosen at random (see ORDER_SEED):
        ids, versions, copied values and their levels, in the order they are to become
        nodes.

        ``hold`` (a quiet-spell step on several threads): vectors drawn above level 0
        stay fresh until HOLD_UPPER_BATCH of them wait, or until this step takes what
        is left, and then go first.
        """
        fresh, upper = self._fresh, self._upper
        total = fresh.count
        if total <= limit:
            rows = np.arange(total)
        elif not hold or not upper or total == len(upper):
            # ascending: the gather below reads the buffer in order
            rows = np.sort(self._order_rng.choice(total, size=limit, replace=False))
        else:
            held: list[int] = []
            if len(upper) >= HOLD_UPPER_BATCH:
                row_of = fresh.row_lookup()
                held = [row_of(i, -1) for i in list(upper)[:limit]]
            # Among any limit + len(upper) rows, at least ``limit`` are of level 0: these
            # are drawn in random order, so dropping the surplus favours no rows.
            count = min(total, limit + len(upper))
            drawn = self._order_rng.choice(total, size=count, replace=False)
            names = fresh.ids
            level0 = [r for r in drawn.tolist() if names[r] not in upper][: limit - len(held)]
            rows = np.array(held + sorted(level0), dtype=np.int64)
        ids = [fresh.ids[r] for r in rows.tolist()]
        vectors = fresh.search_matrix()[rows]  # a copy: the rows may move meanwhile
        levels = np.fromiter((upper.get(i, 1) for i in ids), np.int32, count=len(ids))
        return ids, [self._fresh_version[i] for i in ids], vectors, levels

    def add_to_graph(
        self, vectors: np.ndarray, threads: int = 1, levels: np.ndarray | None = None
    ) -> int:
        """Insert into the graph with ``threads`` FAISS threads, at the given ``levels``
        (1-based; None: FAISS draws them); return the first new node number. No row
        lock needed."""
        with self._graph_lock.writing():
            graph = self._graph
            base = int(graph.ntotal)
            if levels is not None:
                preset_levels(graph, levels)
            try:
                add_with_threads(graph, vectors, threads)
            finally:
                # FAISS aborts the process on its next add if the levels and the nodes
                # disagree: a failed add leaves no preset behind.
                if graph.hnsw.levels.size() != graph.ntotal:
                    graph.hnsw.levels.resize(graph.ntotal)
        return base

    def settle(self, ids: list[str], versions: list[int], base: int) -> None:
        """Make inserted nodes live unless their id changed meanwhile; row lock exclusive."""
        assert base == self._nodes.nodes, "nodes are settled in the order they were added"
        moved, row_of = [], self._table.row_lookup()
        rows = np.full(len(ids), -1, dtype=np.int64)
        for offset, (vector_id, version) in enumerate(zip(ids, versions, strict=True)):
            if self._fresh_version.get(vector_id) == version:
                # a current fresh version means the id is a live row with this vector
                rows[offset] = row_of(vector_id, -1)
                del self._fresh_version[vector_id]
                self._upper.pop(vector_id, None)
                moved.append(vector_id)
        self._nodes.add_nodes(rows)
        self._fresh.remove(moved)
        if not self._fresh_version:
            self._fresh_version = {}  # a drained dict keeps its peak size; a new one is small
        self.dirty = True

    # ---- rebuild (maintenance thread) ------------------------------------------------

    def live_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Live node numbers and their vectors, the source of a rebuild; row lock shared."""
        nodes = self._nodes.live_nodes()
        with self._graph_lock.reading():
            vectors = self._graph.reconstruct_batch(nodes) if len(nodes) else None
        if vectors is None:
            vectors = np.zeros((0, self.dimension), np.float32)
        return nodes, vectors

    def new_graph(self) -> Any:
        """An empty FAISS HNSW graph with this collection's parameters."""
        graph = faiss().IndexHNSWFlat(self.dimension, self.m, _faiss_metric(self.metric))
        graph.hnsw.efConstruction = self.ef_construction
        return graph

    def swap_graph(self, graph: Any, old_nodes: np.ndarray) -> None:
        """Replace the graph by one built from ``old_nodes`` (in order); row lock exclusive."""
        with self._graph_lock.writing():
            self._graph = graph
        self._nodes.renumber(old_nodes)  # nodes killed since live_nodes stay tombstones
        self.dirty = True

    # ---- persistence -----------------------------------------------------------------

    def node_names(self) -> list[str | None]:
        """Each settled node's id (None: a tombstone), for ``serialize``; row lock held."""
        names = self._table.ids
        rows = self._nodes.rows_of_nodes(np.arange(self._nodes.nodes, dtype=np.int64))
        return [None if r < 0 else names[r] for r in rows.tolist()]

    def write_file(self, sink: Writable, names: list[str | None]) -> None:
        """Write the index file into ``sink`` as it is made: magic, node ids
        (``node_names``, taken under the row lock), the FAISS graph, CRC32 of all before
        it. Graph insertion must not run meanwhile. FAISS hands the graph over in
        pieces, so no copy of it is made in memory (a whole-file bytes object and its
        copies held about four times the graph at once: 640 MB for 100k x 384)."""
        checked = ChecksummingWriter(sink)
        with self._graph_lock.reading():
            count = int(self._graph.ntotal)
            names = names[:count] + [None] * (count - len(names))
            ids = orjson.dumps(names)
            checked.write(_MAGIC + _U64.pack(len(ids)))
            checked.write(ids)
            lib = faiss()
            lib.write_index(self._graph, lib.PyCallbackIOWriter(checked.write))
        sink.write(_U32.pack(checked.checksum.crc32))

    def restore(self, data: bytes, table: VectorTable) -> None:
        """Adopt a saved graph; nodes whose id no longer holds the same vector are tombstones.

        Called on an index that has had nothing put into it yet. Table rows without a
        live node go to the fresh buffer, so a stale index file is still correct.
        """
        graph, node_ids = _parse_index_file(data)
        if graph.d != self.dimension or graph.metric_type != _faiss_metric(self.metric):
            raise CorruptIndexError("index file does not match the collection")
        n = graph.ntotal
        row_of = table.row_lookup()
        rows = np.fromiter(
            (row_of(i, -1) if isinstance(i, str) else -1 for i in node_ids), np.int64, count=n
        )
        del node_ids  # the table's own id strings stand for the nodes from here on
        live = np.zeros(n, dtype=bool)
        known = np.flatnonzero(rows >= 0)
        if len(known):
            stored = graph.reconstruct_batch(known)
            live[known] = (stored == table.search_rows(rows[known])).all(axis=1)
        # The same value upserted twice leaves two nodes naming one row: keep the first.
        live_nodes = np.flatnonzero(live)
        _, first = np.unique(rows[live_nodes], return_index=True)
        keep = np.full(n, -1, dtype=np.int64)
        keep[live_nodes[first]] = rows[live_nodes[first]]
        self._graph = graph
        self._nodes.replace(keep)
        self.dirty = False
        self.put_missing(table)

    def put_missing(self, table: VectorTable) -> None:
        """Send every table row that has no live node to the fresh buffer."""
        rows = self._nodes.unlinked_rows(table.count)
        if len(rows):
            ids = table.ids
            self.put([ids[r] for r in rows.tolist()], table.search_rows(rows))


class StoredRows:
    """``HnswIndex.stored_rows``: rows in the graph are read from its storage a block at
    a time (into one reused buffer); the few still fresh were copied when it was made."""

    def __init__(
        self, index: HnswIndex, nodes: np.ndarray, fresh_at: np.ndarray, fresh: np.ndarray
    ) -> None:
        self._index = index
        self._nodes = nodes
        self._fresh_at = fresh_at
        self._fresh = fresh

    @property
    def shape(self) -> tuple[int, int]:
        return len(self._nodes), self._index.dimension

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        count, dimension = self.shape
        buffer = np.empty((min(rows, count), dimension), dtype=np.float32)
        matrix = self._index.frozen_storage()  # the caller holds the maintenance lock
        for start in range(0, count, rows):
            nodes = self._nodes[start : start + rows]
            lo, hi = np.searchsorted(self._fresh_at, [start, start + len(nodes)])
            if hi == lo and _consecutive(nodes):
                # Rows whose nodes are in order (as a bulk import's can be): no copy at all.
                yield matrix[nodes[0] : nodes[0] + len(nodes)]
                continue
            out = buffer[: len(nodes)]
            if hi - lo < len(nodes):  # some rows are in the graph
                np.take(matrix, np.where(nodes < 0, 0, nodes), axis=0, out=out)
            if hi > lo:
                out[self._fresh_at[lo:hi] - start] = self._fresh[lo:hi]
            yield out


def _consecutive(nodes: np.ndarray) -> bool:
    return bool(
        nodes[-1] - nodes[0] == len(nodes) - 1 and (len(nodes) < 2 or (np.diff(nodes) == 1).all())
    )


def next_idle_chunk(chunk: int, added: int, took_s: float) -> int:
    """The size of the next quiet-spell insertion step after one of ``chunk`` vectors
    that inserted ``added`` in ``took_s`` seconds: twice as many while the doubled step
    would still hold the graph under IDLE_STEP_S (judged at this step's pace, which a
    bigger step only beats), fewer when this one took longer, never outside
    [INSERT_CHUNK_IDLE, INSERT_CHUNK_IDLE_MAX]."""
    if added < chunk:
        return chunk  # the fresh buffer ran short: this step says nothing about bigger ones
    within = int(added * IDLE_STEP_S / max(took_s, 1e-6))
    return max(INSERT_CHUNK_IDLE, min(2 * chunk, within, INSERT_CHUNK_IDLE_MAX))


class Writable(Protocol):
    """Where an index file is written (a file, or a SealedWriter over one)."""

    def write(self, data: bytes, /) -> int | None: ...


def level_cdf(graph: Any) -> np.ndarray:
    """The cumulative distribution of ``graph``'s HNSW levels (FAISS's assign_probas)."""
    return np.cumsum(faiss().vector_to_array(graph.hnsw.assign_probas))


def draw_levels(cdf: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` HNSW levels (1-based) drawn from ``cdf`` as FAISS's ``random_level``
    draws them."""
    drawn = np.searchsorted(cdf, rng.random(count), side="right")
    return np.minimum(drawn + 1, len(cdf)).astype(np.int32)


def preset_levels(graph: Any, levels: np.ndarray) -> None:
    """Give FAISS the levels (1-based) of the next ``len(levels)`` nodes of ``graph``:
    its next add() of exactly that many vectors takes them instead of drawing its own."""
    held = graph.hnsw.levels
    start = int(held.size())
    held.resize(start + len(levels))
    faiss().rev_swig_ptr(held.data(), start + len(levels))[start:] = levels


def add_with_threads(graph: Any, vectors: np.ndarray, threads: int) -> None:
    """``graph.add`` with ``threads`` OpenMP threads for this call only.

    OpenMP's thread count belongs to the calling thread, so other threads' searches
    keep theirs, and this thread's is put back afterwards.
    """
    if threads <= 1:
        graph.add(vectors)
        return
    lib = faiss()
    before = lib.omp_get_max_threads()
    lib.omp_set_num_threads(threads)
    try:
        graph.add(vectors)
    finally:
        lib.omp_set_num_threads(before)


def _parse_index_file(data: bytes) -> tuple[Any, list[str]]:
    head = len(_MAGIC) + _U64.size
    if len(data) < head + _U32.size or not data.startswith(_MAGIC):
        raise CorruptIndexError("not an index file")
    (crc,) = _U32.unpack_from(data, len(data) - _U32.size)
    body = memoryview(data)[: len(data) - _U32.size]
    if zlib.crc32(body) != crc:
        raise CorruptIndexError("index file checksum mismatch")
    (ids_len,) = _U64.unpack_from(data, len(_MAGIC))
    if head + ids_len > len(body):
        raise CorruptIndexError("index file is truncated")
    try:
        node_ids = orjson.loads(body[head : head + ids_len])
        graph = faiss().deserialize_index(np.frombuffer(body[head + ids_len :], dtype=np.uint8))
    except (orjson.JSONDecodeError, RuntimeError) as exc:
        raise CorruptIndexError(str(exc)) from exc
    if not isinstance(node_ids, list) or len(node_ids) != graph.ntotal:
        raise CorruptIndexError("index file node ids do not match the graph")
    return graph, node_ids
