"""Incremental audit: a verified prefix recorded as an event, and checks that start after it.

A successful verify may record ``AuditCheckpointRecorded`` (seq and hash it
verified through). ``verify_since_checkpoint`` then checks that the event at
that seq still has that hash, walks the chain only from there (its first link
must name that hash), and compares only the audit rows written after it, so
the daily check costs the day's events, not the whole history.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from eventlog.events import AuditCheckpointRecorded, decode_event
from eventlog.hashchain import Mismatch
from eventlog.records import StoredEvent, utc_now
from eventlog.scan import last_of_type, row_at, snapshot_cursor
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditTarget
from projections.fold import ClientState
from projections.replay import AuditReport, Progress, walk_and_compare
from projections.walk import StateLoader

AUDIT_ACTOR = "audit"


class NoAuditCheckpoint(LookupError):
    """The log holds no audit checkpoint to start from."""


def latest_checkpoint(store: SqliteEventStore) -> tuple[int, AuditCheckpointRecorded] | None:
    """The newest recorded checkpoint and the seq of its event, if any."""
    with snapshot_cursor(store.engine) as cursor:
        row = last_of_type(cursor, AuditCheckpointRecorded.event_type)
    if row is None:
        return None
    event = decode_event(row.type, row.schema_version, orjson.loads(row.data_json), None)
    assert isinstance(event, AuditCheckpointRecorded)
    return row.seq, event


def _states_from_history(after_seq: int) -> Any:
    """Each client's state as of ``after_seq``, read from the (already verified) live tables."""

    def loader_for(cursor: Any) -> StateLoader:

        def load(client_id: str) -> ClientState | None:
            cursor.execute(
                "SELECT tier, status, seq FROM client_history "
                "WHERE client_id = ? AND seq <= ? ORDER BY seq DESC LIMIT 1",
                (client_id, after_seq),
            )
            history = cursor.fetchone()
            if history is None:
                return None
            cursor.execute("SELECT name, email FROM client_state WHERE client_id = ?", (client_id,))
            contact = cursor.fetchone()
            if contact is None:
                return None
            return ClientState(client_id, contact[0], contact[1], *history)

        return load

    return loader_for


def verify_since_checkpoint(
    store: SqliteEventStore, audit_db: AuditTarget, progress: Progress | None = None
) -> AuditReport:
    """Check the checkpoint's link, then only the events and rows after it."""
    found = latest_checkpoint(store)
    if found is None:
        raise NoAuditCheckpoint(
            "no audit checkpoint in the log: run `vectorpanda audit verify --record-checkpoint`"
        )
    _, checkpoint = found
    since, expected = checkpoint.verified_seq, checkpoint.verified_hash
    with snapshot_cursor(store.engine) as cursor:
        at = row_at(cursor, since)
    link: list[Mismatch] = []
    if at is None:
        link.append(Mismatch(since, "the checkpoint's verified event is missing from the log"))
    elif at[1] != expected:
        link.append(Mismatch(since, "the event no longer has the hash its checkpoint recorded"))
    report = walk_and_compare(
        store,
        audit_db,
        after_seq=since,
        prev_hash=expected,
        state_loader=_states_from_history(since),
        progress=progress,
    )
    mismatches = sorted([*link, *report.mismatches], key=lambda m: m.seq)
    return replace(report, ok=not mismatches, mismatches=mismatches)


def record_checkpoint(
    store: SqliteEventStore, report: AuditReport, tool_version: str
) -> StoredEvent | None:
    """Record what ``report`` verified as a checkpoint event; None when there is nothing new."""
    if not report.ok or report.verified_seq < 1 or report.verified_seq <= report.since_seq:
        return None
    event = AuditCheckpointRecorded(
        verified_seq=report.verified_seq,
        verified_hash=report.verified_hash,
        verified_at=utc_now(),
        tool_version=tool_version,
        mode="incremental" if report.since_seq else "full",
    )
    return store.append([event], AUDIT_ACTOR)[0]
