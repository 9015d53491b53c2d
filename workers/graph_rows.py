"""Which HNSW graph node holds each table row's vector, and which row each node serves.

Two int32 arrays kept by the collection's table (rows move when one is deleted: the
table moves their node with them) instead of a dict of id -> node and a list of
node -> id: at 100,000 vectors about 1 MiB rather than 8 MiB of Python objects, and a
graph search turns nodes into rows with one array lookup instead of one dict lookup
per hit.

A node whose row is gone or whose row's vector was replaced is a *tombstone* (row -1);
a row whose vector is in no node yet (the fresh buffer) has node -1. Rows at or past
the table's count always have node -1.
"""

from __future__ import annotations

import numpy as np

_MIN_CAPACITY = 64
# A collection holds far fewer than 2**31 rows or nodes; answers are int64 as elsewhere.
# Up to this many nodes are turned into rows one by one (a few queries' answers).
_FEW_NODES = 256
_LINK = np.dtype("int32")


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    if needed <= len(array):
        return array
    out = np.full(max(needed, 2 * len(array), _MIN_CAPACITY), -1, dtype=_LINK)
    out[: len(array)] = array
    return out


class GraphRows:
    """row -> node and node -> row; changed only under the collection's exclusive row lock."""

    def __init__(self) -> None:
        self._node_of_row = np.full(0, -1, dtype=_LINK)
        self._row_of_node = np.full(0, -1, dtype=_LINK)
        self.nodes = 0  # nodes settled into the graph, tombstones included
        self.linked = 0  # rows whose vector a node holds (= live nodes)

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays."""
        return int(self._node_of_row.nbytes + self._row_of_node.nbytes)

    @property
    def row_capacity(self) -> int:
        """Rows the row -> node array has room for."""
        return len(self._node_of_row)

    def node_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """The node of each row (-1: none), as a new array."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(len(rows), -1, dtype=np.int64)
        inside = rows < len(self._node_of_row)
        out[inside] = self._node_of_row[rows[inside]]
        return out

    def rows_of_nodes(self, nodes: np.ndarray) -> np.ndarray:
        """The row each node serves (-1: tombstone, no node, or not settled yet)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        settled, row_of_node = self.nodes, self._row_of_node
        if nodes.size <= _FEW_NODES:  # a query's answer: cheaper in Python than in numpy
            rows = [row_of_node.item(n) if 0 <= n < settled else -1 for n in nodes.ravel().tolist()]
            return np.array(rows, dtype=np.int64).reshape(nodes.shape)
        known = (nodes >= 0) & (nodes < settled)
        out = np.full(nodes.shape, -1, dtype=np.int64)
        out[known] = row_of_node[nodes[known]]
        return out

    def live_nodes(self) -> np.ndarray:
        """Node numbers that serve a row, ascending."""
        return np.flatnonzero(self._row_of_node[: self.nodes] >= 0)

    def live_mask(self, count: int) -> np.ndarray:
        """Per node below ``count``: whether it serves a row (a new bool array)."""
        out = np.zeros(count, dtype=bool)
        upto = min(count, self.nodes)
        out[:upto] = self._row_of_node[:upto] >= 0
        return out

    def unlinked_rows(self, count: int) -> np.ndarray:
        """Rows below ``count`` whose vector is in no node."""
        self.reserve_rows(count)
        return np.flatnonzero(self._node_of_row[:count] < 0)

    # ---- changes (exclusive row lock) -------------------------------------------

    def reserve_rows(self, rows: int) -> None:
        """Room for ``rows`` table rows."""
        self._node_of_row = _grown(self._node_of_row, rows)

    def shrink_rows(self, capacity: int) -> None:
        """Give back room past ``capacity`` rows (all of them unlinked)."""
        if len(self._node_of_row) > capacity:
            self._node_of_row = self._node_of_row[:capacity].copy()

    def unlink(self, row: int) -> None:
        """The row's vector changed or the row is gone: its node becomes a tombstone."""
        if row >= len(self._node_of_row):
            return
        node = int(self._node_of_row[row])
        if node >= 0:
            self._row_of_node[node] = -1
            self._node_of_row[row] = -1
            self.linked -= 1

    def move(self, source: int, target: int) -> None:
        """Row ``source`` now lives at ``target`` (already unlinked); ``source`` is free."""
        self.reserve_rows(max(source, target) + 1)
        node = int(self._node_of_row[source])
        self._node_of_row[target] = node
        self._node_of_row[source] = -1
        if node >= 0:
            self._row_of_node[node] = target

    def add_nodes(self, rows: np.ndarray) -> None:
        """Append nodes ``self.nodes``.. serving ``rows`` (-1: a tombstone from the start)."""
        rows = np.asarray(rows, dtype=np.int64)
        start, end = self.nodes, self.nodes + len(rows)
        self._row_of_node = _grown(self._row_of_node, end)
        self._row_of_node[start:end] = rows
        live = rows >= 0
        if live.any():
            self.reserve_rows(int(rows.max()) + 1)
            self._node_of_row[rows[live]] = np.flatnonzero(live) + start
        self.linked += int(live.sum())
        self.nodes = end

    def replace(self, rows: np.ndarray) -> None:
        """A new graph whose node i serves ``rows[i]`` (-1: tombstone); all else unlinked."""
        self._node_of_row.fill(-1)
        self._row_of_node = np.full(0, -1, dtype=_LINK)
        self.nodes = self.linked = 0
        self.add_nodes(rows)

    def renumber(self, old_nodes: np.ndarray) -> None:
        """After a rebuild: new node i is old node ``old_nodes[i]``."""
        self.replace(self.rows_of_nodes(old_nodes))
