"""A collection's everyday record operations: list (a walk in id order), count, update.

A part of ``Collection`` kept in its own module; it follows the same lock order
(``_write_mutex`` -> ``_rows``) and the same rule for writes: the WAL record is
fsynced before memory changes.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from workers.hnsw_index import HnswIndex
from workers.id_order import IdOrder, start_after
from workers.metadata_filter import Predicate, matching_rows
from workers.metadata_patch import check_size, patched
from workers.read_write_lock import ReadWriteLock
from workers.vector_table import VectorTable
from workers.wal import MetadataRecord, WriteAheadLog
from workers.work_budget import WorkBudget, unbounded

Metadata = dict[str, Any] | None
# A walk checks its budget (deadline, cancellation) once per this many ids examined.
CHECK_EVERY = 4096


class CollectionRecords:
    """List, count and metadata updates over the rows of a ``Collection``."""

    _table: VectorTable
    _index: HnswIndex | None
    _wal: WriteAheadLog
    _write_mutex: threading.Lock
    _rows: ReadWriteLock
    _id_order: IdOrder

    def _check_open(self) -> None:
        raise NotImplementedError

    def _request_maintenance(self) -> None:
        raise NotImplementedError

    def update_metadata(
        self,
        ids: list[str] | None,
        predicate: Predicate | None,
        fields: dict[str, Any],
        unset: list[str],
        max_metadata_bytes: int | None = None,
        budget: WorkBudget | None = None,
    ) -> int:
        """Merge ``fields`` into and remove ``unset`` from the metadata of ``ids`` (or of
        every vector matching ``predicate``); return how many vectors matched.

        One WAL record per call, fsynced before memory changes: after a crash the update
        is there whole or not at all. A result over ``max_metadata_bytes`` raises
        PatchError before anything is written. The budget is checked only while
        matching the filter: once the update is logged it finishes.
        """
        with self._write_mutex:
            self._check_open()
            table = self._table
            if ids is None and predicate is None:
                targets = list(table.ids)
            elif ids is None:
                assert predicate is not None
                mask = matching_rows(predicate, table.metadata, budget or unbounded())
                targets = [table.ids[r] for r in np.flatnonzero(mask)]
            else:
                targets = [i for i in dict.fromkeys(ids) if table.row_of(i) is not None]
            if not targets:
                return 0
            # Rows cannot move while the write mutex is held: the results computed here are
            # what replaying the record gives, and readers are held back only to assign them.
            rows: list[int] = []
            results: list[Metadata] = []
            for vector_id in targets:
                row = table.row_of(vector_id)
                assert row is not None
                result = patched(table.metadata[row], fields, unset)
                check_size(vector_id, result, max_metadata_bytes)
                rows.append(row)
                results.append(result)
            self._wal.append([MetadataRecord(targets, fields, unset)])
            with self._rows.writing():
                for row, result in zip(rows, results, strict=True):
                    table.metadata[row] = result
        self._request_maintenance()
        return len(targets)

    def count(self, predicate: Predicate | None, budget: WorkBudget | None = None) -> int:
        """Live vectors matching ``predicate`` (all of them for None); exact."""
        with self._rows.reading():
            self._check_open()
            if predicate is None:
                return self._table.count
            mask = matching_rows(predicate, self._table.metadata, budget or unbounded())
            return int(np.count_nonzero(mask))

    def list_page(
        self,
        after: str | None,
        limit: int,
        predicate: Predicate | None,
        include_metadata: bool,
        include_values: bool,
        budget: WorkBudget | None = None,
    ) -> tuple[list[str], list[Metadata] | None, np.ndarray | None, bool]:
        """Up to ``limit`` matching ids greater than ``after``, ascending; their metadata
        and values if asked; and whether more matching ids follow.

        A selective filter may examine many ids for one page: the budget (deadline,
        cancellation) is checked as it goes, and the ids examined are its cost.
        """
        budget = budget or unbounded()
        with self._rows.reading():
            self._check_open()
            table = self._table
            ordered = self._id_order.ids(table.ids, table.count)
            ids: list[str] = []
            rows: list[int] = []
            more = False
            examined = 0
            for position in range(start_after(ordered, after), len(ordered)):
                examined += 1
                if examined % CHECK_EVERY == 0:
                    budget.check()
                vector_id = ordered[position]
                row = table.row_of(vector_id)
                if row is None or (predicate is not None and not predicate(table.metadata[row])):
                    continue
                if len(ids) == limit:
                    more = True
                    break
                ids.append(vector_id)
                rows.append(row)
            budget.spend(examined)
            meta = [table.metadata[r] for r in rows] if include_metadata else None
            values = None
            if include_values:
                values = table.values(np.asarray(rows, dtype=np.int64))
        return ids, meta, values, more
