"""Rebuild the audit tables from the event log, and check the live ones against it.

Both read only the event store (SQLite) and the audit database, so they work
with the broker down.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Table

from eventlog.consumer import EventReader
from eventlog.hashchain import ChainReport, Mismatch
from eventlog.sqlite import read_transaction
from eventlog.store import MAX_READ_LIMIT
from projections.audit_store import AuditProjection, _checkpoint, table_rows
from projections.tables import PROJECTED


class ReplayTargetExists(FileExistsError):
    """Replay writes only into a fresh database."""


def replay_into(events: EventReader, path: Path, through_seq: int | None = None) -> int:
    """Fold the log (up to ``through_seq``) into a fresh database at ``path``; return its seq."""
    if path.exists():
        raise ReplayTargetExists(f"{path} exists; replay writes only into a fresh database")
    projection = AuditProjection.at(path)
    try:
        cp = 0
        while through_seq is None or cp < through_seq:
            page = events.read(after_seq=cp, limit=MAX_READ_LIMIT)
            if through_seq is not None:
                page = [e for e in page if e.seq <= through_seq]
            if not page:
                break
            cp = projection.apply(page)
        return cp
    finally:
        projection.close()


class ChainVerifier(EventReader, Protocol):
    def verify_chain(self) -> ChainReport: ...


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The hash chain's verdict plus the live tables compared with a replay."""

    ok: bool
    events: int
    head_hash: str
    checkpoint: int
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def first_bad_seq(self) -> int | None:
        return self.mismatches[0].seq if self.mismatches else None


def _first_difference(
    table: Table, live: list[dict[str, Any]], fresh: list[dict[str, Any]]
) -> int | None:
    if table.name == "client_state":
        by_id = {r["client_id"]: r for r in live}
        fresh_by_id = {r["client_id"]: r for r in fresh}
        seqs = [
            min(
                by_id.get(cid, {}).get("updated_seq", 1 << 62),
                fresh_by_id.get(cid, {}).get("updated_seq", 1 << 62),
            )
            for cid in by_id.keys() | fresh_by_id.keys()
            if by_id.get(cid) != fresh_by_id.get(cid)
        ]
        return min(seqs) if seqs else None
    for a, b in zip(live, fresh, strict=False):
        if a != b:
            return int(min(a["seq"], b["seq"]))
    if len(live) != len(fresh):
        longer = live if len(live) > len(fresh) else fresh
        return int(longer[min(len(live), len(fresh))]["seq"])
    return None


Snapshot = dict[str, list[dict[str, Any]]]


def snapshot(projection: AuditProjection) -> tuple[int, Snapshot]:
    """The checkpoint and every projected row, read in one consistent transaction."""
    with read_transaction(projection.engine) as conn:
        return _checkpoint(conn, projection.name), {t.name: table_rows(conn, t) for t in PROJECTED}


def compare_tables(live: Snapshot, fresh: Snapshot) -> list[Mismatch]:
    """Per table, the first seq at which the two snapshots differ."""
    found: list[Mismatch] = []
    for table in PROJECTED:
        seq = _first_difference(table, live[table.name], fresh[table.name])
        if seq is not None:
            found.append(Mismatch(seq=seq, reason=f"{table.name} differs from the replay"))
    return found


def verify_audit(events: ChainVerifier, audit_db: Path) -> AuditReport:
    """Check the chain, then replay through the live checkpoint and compare every table."""
    chain = events.verify_chain()
    live = AuditProjection.at(audit_db)
    try:
        checkpoint, live_rows = snapshot(live)
    finally:
        live.close()
    with tempfile.TemporaryDirectory(prefix="vp-verify-") as tmp:
        fresh_path = Path(tmp) / "replay.sqlite3"
        replay_into(events, fresh_path, through_seq=checkpoint)
        fresh = AuditProjection.at(fresh_path)
        try:
            _, fresh_rows = snapshot(fresh)
        finally:
            fresh.close()
    mismatches = sorted(
        [*chain.mismatches, *compare_tables(live_rows, fresh_rows)], key=lambda m: m.seq
    )
    return AuditReport(
        ok=not mismatches,
        events=chain.events,
        head_hash=chain.head_hash,
        checkpoint=checkpoint,
        mismatches=mismatches,
    )
