"""A collection's reads: queries (one request's, or a micro-batch of quick ones) and fetch.

A part of ``Collection`` kept in its own module; searches hold the rows lock shared
(``_rows``), and the HNSW index's own graph lock while FAISS runs. ``wait=False``
(the worker's event loop) never waits for a lock a writer holds: WouldBlock instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from workers.collection_spec import CollectionSpec
from workers.errors import StoreError
from workers.flat_index import ScanHelpers, exact_search
from workers.hnsw_index import HnswIndex
from workers.metadata_filter import Predicate, matching_rows
from workers.read_write_lock import ReadWriteLock, WouldBlock
from workers.vector_table import VectorTable, normalized
from workers.work_budget import WorkBudget, unbounded

Metadata = dict[str, Any] | None
QueryAnswer = tuple[list[dict[str, Any]], np.ndarray | None]


class QuickQuery(Protocol):
    """One request's part of a batched quick query (see ``Collection.query_many``)."""

    queries: np.ndarray
    include_metadata: bool
    include_values: bool
    budget: WorkBudget


# Queries this small are answered on the worker's event loop, not in a thread: the
# hop costs more than the search (about 0.2 ms of CPU per query, measured).
INLINE_MAX_QUERIES = 4
INLINE_MAX_EF = 256
INLINE_MAX_FRESH = 2048
# A flat collection this small (query vectors x rows x dimension) is scanned on the
# event loop too: about 0.1 ms, less than the hop to a thread and back, and no turns of
# the interpreter lock against other tenants' threads on the way.
INLINE_MAX_FLAT_FLOATS = 1 << 18
# Query vectors searched between two looks at the request's budget: one vector's
# search is bounded by the collection's size, so an abandoned batch stops soon.
SEARCH_BATCH = 8


class CollectionSearch:
    """Queries and fetch over the rows of a ``Collection``."""

    spec: CollectionSpec
    _table: VectorTable
    _index: HnswIndex | None
    _rows: ReadWriteLock
    _closed: StoreError | None

    def _check_open(self) -> None:
        raise NotImplementedError

    def _check_vectors(self, vectors: np.ndarray, rows: int | None) -> None:
        raise NotImplementedError

    def _scan_helpers(self) -> ScanHelpers:
        """Spare cores for a long exact scan (the worker's, see workers.maintenance)."""
        raise NotImplementedError

    def quick_to_search(self, queries: int, top_k: int, ef_search: int | None) -> bool:
        """Whether an unfiltered query is cheap enough to answer on the event loop: a
        few query vectors, and an HNSW graph with a small fresh buffer and a modest ef,
        or a small flat collection."""
        if self._closed is not None or queries > INLINE_MAX_QUERIES:
            return False
        index = self._index
        if index is None:
            return queries * self._table.count * self.spec.dimension <= INLINE_MAX_FLAT_FLOATS
        return max(top_k, ef_search or 0) <= INLINE_MAX_EF and index.fresh_count <= INLINE_MAX_FRESH

    def query(
        self,
        queries: np.ndarray,
        top_k: int,
        include_metadata: bool,
        include_values: bool,
        predicate: Predicate | None = None,
        ef_search: int | None = None,
        wait: bool = True,
        budget: WorkBudget | None = None,
    ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        """Top-k per query row among vectors matching ``predicate``; values if asked.

        ``wait=False`` (the worker's event loop) raises WouldBlock instead of waiting for
        a lock a writer holds, and instead of any long exact scan. ``budget`` stops the
        work between chunks of the filter and batches of query vectors once abandoned.
        """
        self._check_vectors(queries, None)
        budget = budget or unbounded()
        if self.spec.metric == "cosine":
            queries = normalized(queries)
        with self._rows.reading(wait):
            self._check_open()
            table = self._table
            mask = None
            if predicate is not None:
                mask = matching_rows(predicate, table.metadata, budget)
            eligible = table.count if mask is None else int(mask.sum())
            parts = []
            # Without waiting, the work may still turn out to need a thread (WouldBlock):
            # its cost is counted once the answer is whole, so the thread counts it once.
            unspent = 0
            for start in range(0, max(len(queries), 1), SEARCH_BATCH):
                budget.check()
                batch = queries[start : start + SEARCH_BATCH]
                parts.append(self._search(table, batch, top_k, mask, ef_search, wait, budget))
                cost = self._search_cost(len(batch), top_k, ef_search, eligible, table.count)
                if wait:
                    budget.spend(cost)
                else:
                    unspent += cost
            scores, rows = _stacked(parts)
            results: list[dict[str, Any]] = []
            ids, meta = table.ids, table.metadata
            for score_row, row_ids in zip(scores, rows, strict=True):
                live = row_ids[row_ids >= 0].tolist()
                result: dict[str, Any] = {
                    "ids": [ids[r] for r in live],
                    "scores": score_row[: len(live)].tolist(),
                }
                if include_metadata:
                    result["metadata"] = [meta[r] for r in live]
                results.append(result)
            values = None
            if include_values:
                values = table.values(rows[rows >= 0], wait)
            budget.spend(unspent)
        return results, values

    def query_many(
        self,
        requests: Sequence[QuickQuery],
        top_k: int,
        ef_search: int | None,
    ) -> list[QueryAnswer | StoreError | None]:
        """Unfiltered quick queries of several requests (same ``top_k`` and ``ef_search``)
        with one graph search, on the event loop (micro-batching, see workers.query_batch);
        on a small flat collection, each request's own exact scan (``_flat_quick``).

        Each request gets exactly the answer ``query`` would give it alone, its own
        refusal (StoreError), or None where ``query`` would have had to wait or scan
        exactly (it then goes to a thread on its own). Each budget is checked and
        charged as if the request had been searched alone. WouldBlock if the rows are
        being written: every request then goes to a thread.
        """
        index = self._index
        if index is None:
            return [self._flat_quick(request, top_k, ef_search) for request in requests]
        out: list[QueryAnswer | StoreError | None] = [None] * len(requests)
        ready: list[int] = []
        for i, request in enumerate(requests):
            try:
                self._check_vectors(request.queries, None)
            except StoreError as exc:
                out[i] = exc
                continue
            ready.append(i)
        cosine = self.spec.metric == "cosine"
        self._rows.acquire_read(False)
        try:
            if self._closed is not None:
                return [self._closed if answer is None else answer for answer in out]
            table = self._table
            searched: list[int] = []
            parts: list[np.ndarray] = []
            for i in ready:
                budget = requests[i].budget
                try:
                    budget.check()
                except StoreError as exc:
                    out[i] = exc
                    continue
                parts.append(requests[i].queries)
                searched.append(i)
            if not parts:
                return out
            stacked = parts[0] if len(parts) == 1 else np.concatenate(parts)
            if cosine:  # row by row, so once for the batch gives each row's own bits
                stacked = normalized(stacked)
                if len(parts) == 1:
                    parts = [stacked]
                else:
                    parts = np.split(stacked, np.cumsum([len(p) for p in parts[:-1]]))
            scores, rows = index.search_many(table, stacked, parts, top_k, ef_search)
            # plain lists once for the whole batch: cheaper than numpy per request
            score_lists, row_lists = scores.tolist(), rows.tolist()
            ids, meta, start = table.ids, table.metadata, 0
            whole = min(top_k, table.count)  # fewer live rows: the graph answered short
            for i, part in zip(searched, parts, strict=True):
                request, end = requests[i], start + len(part)
                lives = [[r for r in row_lists[j] if r >= 0] for j in range(start, end)]
                if any(len(live) < whole for live in lives):
                    start = end
                    continue  # searched alone in a thread (exact fallback)
                values = None
                if request.include_values:
                    picked = rows[start:end]
                    try:
                        values = table.values(picked[picked >= 0], wait=False)
                    except WouldBlock:
                        start = end
                        continue  # the graph is being added to: a thread answers it
                request.budget.spend(
                    index.search_cost(len(part), top_k, ef_search, table.count, table.count)
                )
                results: list[dict[str, Any]] = []
                for j, live in zip(range(start, end), lives, strict=True):
                    result: dict[str, Any] = {
                        "ids": [ids[r] for r in live],
                        "scores": score_lists[j][: len(live)],
                    }
                    if request.include_metadata:
                        result["metadata"] = [meta[r] for r in live]
                    results.append(result)
                out[i] = (results, values)
                start = end
        finally:
            self._rows.release_read()
        return out

    def _flat_quick(
        self, request: QuickQuery, top_k: int, ef_search: int | None
    ) -> QueryAnswer | StoreError | None:
        """A small flat collection's quick query: ``query`` itself, on the event loop (an
        exact scan's arithmetic depends on how many queries it takes at once, so each
        request is scanned alone, as a thread would); None where it would wait."""
        try:
            return self.query(
                request.queries,
                top_k,
                request.include_metadata,
                request.include_values,
                None,
                ef_search,
                wait=False,
                budget=request.budget,
            )
        except WouldBlock:
            return None
        except StoreError as exc:
            return exc

    def _search_cost(
        self, queries: int, top_k: int, ef_search: int | None, eligible: int, rows: int
    ) -> int:
        """Vectors compared by ``_search``: the graph's estimate, or an exact scan's."""
        if self._index is not None:
            return self._index.search_cost(queries, top_k, ef_search, eligible, rows)
        return queries * eligible

    def _search(
        self,
        table: VectorTable,
        queries: np.ndarray,
        top_k: int,
        mask: np.ndarray | None,
        ef_search: int | None,
        wait: bool,
        budget: WorkBudget,
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._index is not None:
            return self._index.search(table, queries, top_k, mask, ef_search, wait)
        # A thread may wait for the scan's helpers; the event loop (wait=False) scans
        # only small collections, alone.
        helpers = self._scan_helpers() if wait else None
        metric, check = self.spec.metric, budget.check
        if mask is None:
            return exact_search(table.search_matrix(), queries, top_k, metric, helpers, check)
        subset = np.flatnonzero(mask)
        matrix = table.search_matrix()[subset]
        scores, local = exact_search(matrix, queries, top_k, metric, helpers, check)
        return scores, (subset[local] if subset.size else local)

    def fetch(self, ids: list[str]) -> tuple[list[str], list[Metadata], np.ndarray]:
        """Found ids in request order (missing ones absent), their metadata and values."""
        with self._rows.reading():
            self._check_open()
            found: list[str] = []
            rows: list[int] = []
            for vector_id in dict.fromkeys(ids):
                row = self._table.row_of(vector_id)
                if row is not None:
                    found.append(vector_id)
                    rows.append(row)
            meta = [self._table.metadata[r] for r in rows]
            values = self._table.values(np.asarray(rows, dtype=np.int64))
        return found, meta, values


def _stacked(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The batches' results as one (scores, rows) pair, short rows padded with -1."""
    if len(parts) == 1:
        return parts[0]
    width = max(scores.shape[1] for scores, _ in parts)
    scores = [np.pad(s, ((0, 0), (0, width - s.shape[1]))) for s, _ in parts]
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=-1) for _, r in parts]
    return np.concatenate(scores), np.concatenate(rows)
