"""SHA-256 digests of the audit tables: equal digests, equal contents.

A table's digest hashes its rows in key order, one canonical-JSON object per
row. ``digests_on`` reads finished tables; ``RowDigest`` takes the same rows
as a replay writes them (seq order for the seq-keyed tables), so a replay
need not read a million rows back to report what it wrote.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table

from eventlog.hashchain import canonical_json
from projections.tables import PROJECTED

DIGEST_BATCH = 5000


def _columns(table: Table) -> list[str]:
    return [str(c.name) for c in table.columns]


class RowDigest:
    """The running digest of one table's rows, fed in key order."""

    def __init__(self, table: Table) -> None:
        self._names = _columns(table)
        self._digest = hashlib.sha256()

    def add(self, rows: Iterable[tuple[Any, ...]]) -> None:
        names, update = self._names, self._digest.update
        for row in rows:
            update(canonical_json(dict(zip(names, row, strict=True))))
            update(b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _whole_table(cursor: Any, table: Table) -> str:
    keys = ", ".join(str(c.name) for c in table.primary_key.columns)
    # Names come from our own table definitions.
    query = f"SELECT {', '.join(_columns(table))} FROM {table.name} ORDER BY {keys}"  # noqa: S608  # nosec B608
    digest = RowDigest(table)
    cursor.execute(query)
    while page := cursor.fetchmany(DIGEST_BATCH):
        digest.add(page)
    return digest.hexdigest()


def digests_on(cursor: Any) -> dict[str, str]:
    """Every projected table's digest, read through a DB-API cursor (one snapshot)."""
    return {table.name: _whole_table(cursor, table) for table in PROJECTED}
