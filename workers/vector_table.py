"""The live rows of one collection in memory: dense arrays, id -> row, swap-remove.

An HNSW collection's table is *detached* once its index holds every live vector
(``detach``): the index's graph storage and fresh buffer then serve the search
vectors, so they are not held twice. For ``l2``/``ip`` those are the values
themselves and the table keeps no vectors at all; for ``cosine`` (the index holds
unit-length copies) it keeps only the original values.

An HNSW collection's table also carries which graph node holds each row's vector
(``GraphRows``), moving it with the row when a delete moves the last row into a hole.
id -> row is an int32 hash table over ``ids`` (``IdRows``), not a dict: a row costs
no Python object beyond its id string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from workers.graph_rows import GraphRows
from workers.id_rows import IdRows
from workers.segment import RowBlocks, SegmentData


class VectorSource(Protocol):
    """Where a detached table's search vectors live (the collection's HNSW index)."""

    def search_vectors(self, rows: np.ndarray, wait: bool = True) -> np.ndarray:
        """The search vectors of the table's ``rows``, in order, as a new (n, d) float32
        array; ``wait=False``: WouldBlock rather than wait for a lock."""
        ...

    def stored_rows(self, count: int) -> RowBlocks:
        """The search vectors of rows ``0..count-1`` as they stand now, to be read a
        block at a time while the index takes no new vectors."""
        ...


_F32 = np.dtype("float32")
_MIN_CAPACITY = 64


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Unit-length copies of rows; zero rows stay zero so their cosine score is 0."""
    wide = vectors.astype(np.float64)
    # np.linalg.norm's own arithmetic for real rows, in as few calls as it takes (each
    # numpy call counts on the query path)
    norms = np.add.reduce(np.multiply(wide, wide), axis=1, keepdims=True)
    np.sqrt(norms, out=norms)
    if len(norms) and np.minimum.reduce(norms, axis=None) > 0:  # NaN: not > 0
        np.divide(wide, norms, out=wide)
        return wide.astype(_F32)
    out = np.zeros(vectors.shape, dtype=_F32)
    np.divide(vectors, norms, out=out, where=norms > 0, casting="unsafe")
    return out


class VectorTable:
    """Rows 0..count-1 are exactly the live vectors, so a scan never sees a deleted one."""

    def __init__(self, dimension: int, normalize: bool) -> None:
        self.dimension = dimension
        self._normalize = normalize
        self._vectors = np.empty((0, dimension), dtype=_F32)
        # Cosine searches a unit-length copy; fetch must return the original values.
        self._search = np.empty((0, dimension), dtype=_F32) if normalize else self._vectors
        self._count = 0
        self.ids: list[str] = []
        self.metadata: list[dict[str, Any] | None] = []
        self._rows = IdRows(self.ids)
        self._source: VectorSource | None = None
        self._graph: GraphRows | None = None

    def track_graph(self, graph: GraphRows) -> None:
        """Keep ``graph``'s row -> node links in step with this table's rows."""
        graph.reserve_rows(self._count)
        self._graph = graph

    @property
    def detached(self) -> bool:
        """Whether the search vectors (and for l2/ip the values) live in the index."""
        return self._source is not None

    @property
    def normalizes(self) -> bool:
        """Whether search vectors are unit-length copies of the values (cosine)."""
        return self._normalize

    def detach(self, source: VectorSource) -> None:
        """Give up the vectors ``source`` holds too (it must hold every live row's)."""
        self._source = source
        empty = np.empty((0, self.dimension), dtype=_F32)
        self._search = empty
        if self._normalize:
            # only the values stay here; compact them to the live rows
            self._vectors = np.ascontiguousarray(self._vectors[: self._count])
        else:
            self._vectors = empty

    def values(self, rows: np.ndarray, wait: bool = True) -> np.ndarray:
        """The original values of ``rows`` (a new array); ``wait=False``: WouldBlock
        rather than wait for the index's graph (a detached table)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._source is None or self._normalize:
            return self._vectors[rows]
        return self._source.search_vectors(rows, wait)

    def search_rows(self, rows: np.ndarray) -> np.ndarray:
        """The search vectors of ``rows`` (normalized for cosine; a new array)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._source is None:
            return self._search[rows]
        return self._source.search_vectors(rows)

    @property
    def count(self) -> int:
        """Number of live rows."""
        return self._count

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the vector arrays (the bulk of a collection's memory)."""
        extra = self._search.nbytes if self._normalize else 0
        return int(self._vectors.nbytes + extra)

    def row_of(self, vector_id: str) -> int | None:
        """The row holding ``vector_id``, or None."""
        return self._rows.get(vector_id)

    def row_lookup(self) -> Callable[[str, int], int]:
        """id -> row with a default (``row_lookup()(id, -1)``), for loops over many ids."""
        return self._rows.row_or

    def vectors(self) -> np.ndarray:
        """Original values of the live rows (a view; valid until the next write)."""
        assert self._source is None or self._normalize, "a detached table holds no values"
        return self._vectors[: self._count]

    def search_matrix(self) -> np.ndarray:
        """The matrix a flat search scans (normalized for cosine; a view)."""
        assert self._source is None, "a detached table's search vectors are the index's"
        return self._search[: self._count]

    def load(self, segment: SegmentData) -> None:
        """Fill an empty table from a segment (ids in a segment never repeat)."""
        assert self._count == 0
        n = len(segment.ids)
        assert isinstance(segment.vectors, np.ndarray)  # as read_segment reads it
        self._reserve(n)
        self._vectors[:n] = segment.vectors
        if self._normalize:
            self._search[:n] = normalized(self._vectors[:n])
        self.ids = list(segment.ids)
        self.metadata = list(segment.metadata)
        self._rows = IdRows(self.ids)
        self._count = n
        if self._graph is not None:
            self._graph.reserve_rows(n)

    def put(
        self, ids: Sequence[str], metadata: Sequence[dict[str, Any] | None], vectors: np.ndarray
    ) -> None:
        """Insert or replace rows; ``ids`` must not repeat. A detached table keeps only
        the ids and metadata (and for cosine the values): the caller puts the search
        vectors into the index."""
        keep_search = self._normalize and self._source is None
        keep_values = self._source is None or self._normalize
        search = normalized(vectors) if keep_search else vectors
        rows = np.empty(len(ids), dtype=np.int64)
        fresh, graph = 0, self._graph
        for i, vector_id in enumerate(ids):
            row = self._rows.get(vector_id)
            if row is None:
                row = self._count + fresh
                fresh += 1
                self.ids.append(vector_id)
                self._rows.add(vector_id, row)
                self.metadata.append(metadata[i])
            else:
                self.metadata[row] = metadata[i]
                if graph is not None:
                    graph.unlink(row)  # the graph's node holds the old vector
            rows[i] = row
        if keep_values:
            self._reserve(self._count + fresh)
            self._vectors[rows] = vectors
            if keep_search:
                self._search[rows] = search
        self._count += fresh
        if graph is not None:
            graph.reserve_rows(self._count)

    def remove(self, ids: Sequence[str]) -> int:
        """Delete rows by id (moving the last row into each hole); return how many existed."""
        removed, graph = 0, self._graph
        for vector_id in ids:
            row = self._rows.pop(vector_id)  # while the id is still at its row
            if row is None:
                continue
            last = self._count - 1
            if graph is not None:
                graph.unlink(row)
                if row != last:
                    graph.move(last, row)
            if row != last:
                moved = self.ids[last]
                if self._vectors.shape[0]:
                    self._vectors[row] = self._vectors[last]
                if self._search.shape[0] and self._search is not self._vectors:
                    self._search[row] = self._search[last]
                self._rows.relocate(moved, last, row)
                self.ids[row] = moved
                self.metadata[row] = self.metadata[last]
            self.ids.pop()
            self.metadata.pop()
            self._count = last
            removed += 1
        if removed:
            self._rows.fit()  # a drained fresh buffer gives its slots back
        if removed and self._vectors.shape[0] > 4 * max(self._count, _MIN_CAPACITY):
            self._resize(max(2 * self._count, _MIN_CAPACITY))
        if (
            removed
            and graph is not None
            and graph.row_capacity > 4 * max(self._count, _MIN_CAPACITY)
        ):
            graph.shrink_rows(2 * max(self._count, _MIN_CAPACITY))
        return removed

    def snapshot(self) -> SegmentData:
        """The live rows as they stand now, for writing a segment: copies, except a
        detached table's vectors, which its index hands out block by block (see
        ``HnswIndex.stored_rows``, valid while no graph step runs)."""
        vectors: np.ndarray | RowBlocks
        if self._source is not None and not self._normalize:
            vectors = self._source.stored_rows(self._count)
        else:
            vectors = self.vectors().copy()
        return SegmentData(ids=list(self.ids), metadata=list(self.metadata), vectors=vectors)

    def _reserve(self, needed: int) -> None:
        capacity = self._vectors.shape[0]
        if needed > capacity:
            self._resize(max(needed, 2 * capacity, _MIN_CAPACITY))

    def _resize(self, capacity: int) -> None:
        grown = np.empty((capacity, self.dimension), dtype=_F32)
        grown[: self._count] = self._vectors[: self._count]
        self._vectors = grown
        if self._source is not None:
            return  # no search copy here
        if self._normalize:
            search = np.empty((capacity, self.dimension), dtype=_F32)
            search[: self._count] = self._search[: self._count]
            self._search = search
        else:
            self._search = grown
