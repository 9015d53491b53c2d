"""One streaming pass over the log: check each link, fold each event, compare each row.

Verify and replay both walk the log page by page and keep only the running
hash and the fold's per-client state; what a table should hold is compared
with what it does hold row by row, as both come off their cursors in seq order
(a merge of two sorted streams), so memory does not grow with the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Table

from eventlog.hashchain import (
    GENESIS_HASH,
    MAX_REPORTED_MISMATCHES,
    ChainRow,
    Mismatch,
    check_link,
)
from eventlog.records import StoredEvent
from projections.fold import ClientState, Effects, fold
from projections.tables import PROJECTED, client_state

LIVE_BATCH = 5000
# Every projected table but client_state is keyed by the seq of the event that wrote the row.
SEQ_TABLES: tuple[Table, ...] = tuple(t for t in PROJECTED if t is not client_state)
StateLoader = Callable[[str], ClientState | None]


def _no_state(_client_id: str) -> ClientState | None:
    return None


@dataclass(slots=True)
class LogWalk:
    """Walks chain rows in seq order from (prev_seq, prev_hash), folding as it goes."""

    prev_seq: int = 0
    prev_hash: str = GENESIS_HASH
    check: bool = True
    load_state: StateLoader = _no_state
    events: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    states: dict[str, ClientState | None] = field(default_factory=dict)

    def note(self, seq: int, reason: str) -> None:
        if len(self.mismatches) < MAX_REPORTED_MISMATCHES:
            self.mismatches.append(Mismatch(seq=seq, reason=reason))

    def fold_rows(self, rows: Iterable[ChainRow]) -> Iterator[tuple[int, Effects]]:
        """(seq, effects) for each row; chain breaks are noted, never fatal."""
        states = self.states
        for row in rows:
            self.events += 1
            if self.check:
                reason, data = check_link(row, self.prev_seq, self.prev_hash)
                if reason is not None:
                    self.note(row.seq, reason)
            else:
                reason, data = None, None
            if data is None:
                data = _parse(row.data_json)
            # Continue from the stored values so one bad row is reported once, not as a cascade.
            self.prev_seq, self.prev_hash = row.seq, row.hash
            stored = StoredEvent(
                row.seq,
                row.event_id,
                row.type,
                row.schema_version,
                row.occurred_at,
                row.actor,
                row.client_id,
                data,
                row.prev_hash,
                row.hash,
            )
            cid = row.client_id
            state = None
            if cid is not None:
                if cid not in states:
                    states[cid] = self.load_state(cid)
                state = states[cid]
            effects = fold(stored, state)
            if effects.state is not None:
                states[effects.state.client_id] = effects.state
            yield row.seq, effects


def _parse(data_json: str) -> dict[str, Any]:
    try:
        data = orjson.loads(data_json)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


_COLUMN_NAMES: dict[str, tuple[str, ...]] = {
    t.name: tuple(c.name for c in t.columns) for t in PROJECTED
}


def row_tuple(table: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    """A folded row in the table's column order, as a cursor returns it."""
    return tuple(map(row.get, _COLUMN_NAMES[table.name]))


class LiveTable:
    """A live seq-keyed table read in keyset pages, matched against expected rows."""

    def __init__(self, cursor: Any, table: Table, after_seq: int = 0) -> None:
        self.table = table
        self._cursor = cursor
        cols = ", ".join(c.name for c in table.columns)
        # Names come from our own table definitions, values are bound.
        query = f"SELECT {cols} FROM {table.name} "  # noqa: S608  # nosec B608
        self._sql = query + "WHERE seq > ? ORDER BY seq LIMIT ?"
        self._page: list[tuple[Any, ...]] = []
        self._pos = 0
        self._last = after_seq
        self.first_bad: int | None = None
        self.rows = 0

    def _peek(self) -> tuple[Any, ...] | None:
        if self._pos == len(self._page):
            self._cursor.execute(self._sql, (self._last, LIVE_BATCH))
            self._page, self._pos = self._cursor.fetchall(), 0
            if not self._page:
                return None
            self._last = self._page[-1][0]
        return self._page[self._pos]

    def expect(self, expected: tuple[Any, ...]) -> None:
        """The next row the table should hold; the first difference is kept."""
        if self.first_bad is not None:
            return
        seq = expected[0]
        live = self._peek()
        if live is not None and live[0] < seq:
            self.first_bad = int(live[0])  # a row the log does not explain
        elif live is None or live[0] > seq or live != expected:
            self.first_bad = int(seq)  # missing or different
        else:
            self._pos += 1
            self.rows += 1

    def finish(self) -> None:
        """Rows left over after the last expected one are extra."""
        if self.first_bad is None:
            extra = self._peek()
            if extra is not None:
                self.first_bad = int(extra[0])


def compare_client_state(
    cursor: Any, states: dict[str, ClientState | None], after_seq: int = 0
) -> int | None:
    """First seq at which the live current-state table differs from the fold's.

    With ``after_seq`` only states changed after it are compared (incremental verify).
    """
    expected = {
        cid: (s.client_id, s.name, s.email, s.tier, s.status, s.updated_seq)
        for cid, s in states.items()
        if s is not None and s.updated_seq > after_seq
    }
    cursor.execute(
        "SELECT client_id, name, email, tier, status, updated_seq FROM client_state "
        "WHERE updated_seq > ? ORDER BY client_id",
        (after_seq,),
    )
    worst: int | None = None
    seen = 0
    while page := cursor.fetchmany(LIVE_BATCH):
        for live in page:
            want = expected.get(live[0])
            if want is not None:
                seen += 1
            if want != live:
                seq = min(int(live[5]), want[5] if want is not None else 1 << 62)
                worst = seq if worst is None else min(worst, seq)
    if seen < len(expected):
        cursor.execute(
            "SELECT client_id FROM client_state WHERE updated_seq > ?",
            (after_seq,),
        )
        present = {r[0] for r in cursor.fetchall()}
        for cid, want in expected.items():
            if cid not in present:
                worst = want[5] if worst is None else min(worst, want[5])
    return worst
