"""Rebuild the audit tables from the event log, and check the live ones against it.

Both read only the event store (SQLite) and the audit database, so they work
with the broker down. Both stream: one pass over the log in keyset pages,
holding the running hash and each client's current state, never a whole table.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table

from eventlog.hashchain import GENESIS_HASH, ChainReport, Mismatch
from eventlog.scan import (
    head_row,
    scan_chain_rows,
    snapshot_cursor,
    snapshot_cursors,
    verify_range,
)
from eventlog.store import SqliteEventStore
from projections.audit_store import AUDIT_CONSUMER, AuditProjection, AuditTarget
from projections.fold import ClientState
from projections.replay_writer import ReplayWriter, WriterProcess
from projections.walk import (
    SEQ_TABLES,
    LiveTable,
    LogWalk,
    StateLoader,
    compare_client_state,
    row_tuple,
)

# Events per replay transaction: big enough to amortise the commit, small enough to bound memory.
_REPLAY_COMMIT = 10_000
_TABLES: dict[str, Table] = {t.name: t for t in SEQ_TABLES}
Progress = Callable[[int, int], None]


class ReplayTargetExists(FileExistsError):
    """Replay writes only into a fresh database."""


def _state_tuple(s: ClientState) -> tuple[Any, ...]:
    return (s.client_id, s.name, s.email, s.tier, s.status, s.updated_seq)


def replay_into(
    events: SqliteEventStore,
    path: Path,
    through_seq: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Fold the log (up to ``through_seq``) into a fresh database at ``path``; return its seq."""
    seq, _ = _replay(events, path, through_seq, progress, digest=False, apart_over=None)
    return seq


def replay_with_digests(
    events: SqliteEventStore,
    path: Path,
    progress: Progress | None = None,
    apart_over: int | None = None,
) -> tuple[int, dict[str, str]]:
    """Replay the whole log into ``path``; its seq and the digests of the tables written.

    A log longer than ``apart_over`` events is written (and hashed) by a second
    process while this one folds: two cores.
    """
    return _replay(events, path, None, progress, digest=True, apart_over=apart_over)


def _replay(
    events: SqliteEventStore,
    path: Path,
    through_seq: int | None,
    progress: Progress | None,
    *,
    digest: bool,
    apart_over: int | None,
) -> tuple[int, dict[str, str]]:
    if path.exists():
        raise ReplayTargetExists(f"{path} exists; replay writes only into a fresh database")
    walk = LogWalk(check=False)
    with snapshot_cursor(events.engine) as log:
        head = head_row(log)
        total = head[0] if head is not None else 0
        if through_seq is not None:
            total = min(total, through_seq)
        apart = apart_over is not None and total > apart_over
        writer = WriterProcess(path, digest) if apart else ReplayWriter(path, digest)
        try:
            pending: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            since_commit = 0
            for seq, effects in walk.fold_rows(scan_chain_rows(log, 0, through_seq)):
                for name, row in effects.rows:
                    pending[name].append(row_tuple(_TABLES[name], row))
                since_commit += 1
                if since_commit >= _REPLAY_COMMIT:
                    writer.write(pending, seq)
                    pending = defaultdict(list)
                    since_commit = 0
                    if progress is not None:
                        progress(seq, total)
            states = [_state_tuple(s) for s in walk.states.values() if s is not None]
            digests = writer.finish(pending, states, walk.prev_seq)
        except BaseException:
            writer.close(wait=False)
            raise
    if progress is not None:
        progress(walk.prev_seq, total)
    return walk.prev_seq, digests


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The hash chain's verdict plus the live tables compared with a replay."""

    ok: bool
    events: int
    head_hash: str
    checkpoint: int
    mismatches: list[Mismatch] = field(default_factory=list)
    # Incremental verify: the verified prefix it started after (0 for a full verify).
    since_seq: int = 0
    head_seq: int = 0
    # How far both the chain and the tables were checked: what a checkpoint may record.
    verified_seq: int = 0
    verified_hash: str = ""
    tables: dict[str, int] = field(default_factory=dict)

    @property
    def first_bad_seq(self) -> int | None:
        return self.mismatches[0].seq if self.mismatches else None


def _live_checkpoint(cursor: Any) -> int:
    cursor.execute("SELECT seq FROM checkpoints WHERE consumer = ?", (AUDIT_CONSUMER,))
    row = cursor.fetchone()
    return 0 if row is None else int(row[0])


def walk_and_compare(
    store: SqliteEventStore,
    audit_db: AuditTarget,
    *,
    after_seq: int = 0,
    prev_hash: str | None = None,
    state_loader: Callable[[Any], StateLoader] | None = None,
    progress: Progress | None = None,
    chain_apart_over: int | None = None,
) -> AuditReport:
    """Walk the chain after ``after_seq`` and compare every live table through its checkpoint.

    With ``chain_apart_over``, a walk longer than that checks the hash links in a
    second process while this one folds and compares: two cores, half the wall time.
    """
    live = AuditProjection.at(audit_db)  # creates the tables when the audit db is new
    try:
        with snapshot_cursors(live.engine) as new_cursor:
            return _walk_and_compare(
                store, new_cursor, after_seq, prev_hash, state_loader, progress, chain_apart_over
            )
    finally:
        live.close()


def _walk_and_compare(
    store: SqliteEventStore,
    new_cursor: Callable[[], Any],
    after_seq: int,
    prev_hash: str | None,
    state_loader: Callable[[Any], StateLoader] | None,
    progress: Progress | None,
    chain_apart_over: int | None,
) -> AuditReport:
    audit = new_cursor()
    checkpoint = _live_checkpoint(audit)
    loader = state_loader(new_cursor()) if state_loader is not None else None
    with snapshot_cursor(store.engine) as log:
        head = head_row(log)
        head_seq = head[0] if head is not None else 0
        start_hash = prev_hash or GENESIS_HASH
        chain = _chain_apart(store, after_seq, start_hash, head_seq, chain_apart_over)
        walk = LogWalk(after_seq, start_hash, check=chain is None)
        if loader is not None:
            walk.load_state = loader
        tables = {t.name: LiveTable(new_cursor(), t, after_seq) for t in SEQ_TABLES}
        state_bad: int | None = None
        verified = (after_seq, prev_hash or "")
        state_done = checkpoint <= after_seq
        if state_done:
            state_bad = compare_client_state(audit, walk.states, after_seq)
        for seq, effects in walk.fold_rows(scan_chain_rows(log, after_seq, head_seq)):
            if seq <= checkpoint:
                for name, row in effects.rows:
                    table = tables[name]
                    table.expect(row_tuple(table.table, row))
                if seq == checkpoint:
                    verified = (seq, walk.prev_hash)
                    state_bad = compare_client_state(audit, walk.states, after_seq)
                    state_done = True
            if progress is not None and seq % 10_000 == 0:
                progress(seq - after_seq, head_seq - after_seq)
        if not state_done:
            # The log ends before the projections' checkpoint (or lacks the event at
            # it): compare what there is; the chain or the tables name the cause.
            state_bad = compare_client_state(audit, walk.states, after_seq)
    if chain is not None:
        walk.mismatches = chain.result().mismatches
    found = list(walk.mismatches)
    for table in tables.values():
        table.finish()
        if table.first_bad is not None:
            found.append(Mismatch(table.first_bad, f"{table.table.name} differs from the replay"))
    if state_bad is not None:
        found.append(Mismatch(state_bad, "client_state differs from the replay"))
    found.sort(key=lambda m: m.seq)
    return AuditReport(
        ok=not found,
        events=walk.events,
        head_hash=walk.prev_hash,
        checkpoint=checkpoint,
        mismatches=found,
        since_seq=after_seq,
        head_seq=walk.prev_seq,
        verified_seq=verified[0],
        verified_hash=verified[1],
        tables={name: t.rows for name, t in tables.items()},
    )


def _chain_apart(
    store: SqliteEventStore, after_seq: int, prev_hash: str, through_seq: int, over: int | None
) -> Future[ChainReport] | None:
    if over is None or through_seq - after_seq <= over or store.engine.url.database is None:
        return None
    if store.engine.dialect.name != "sqlite":  # the second process opens the SQLite file
        return None
    # forkserver: the child is not a fork of this process and its open connections.
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(1, mp_context=context)
    job = pool.submit(verify_range, store.engine.url.database, after_seq, prev_hash, through_seq)
    pool.shutdown(wait=False)  # the job still runs; the worker exits once it is done
    return job


def verify_audit(
    events: SqliteEventStore,
    audit_db: AuditTarget,
    progress: Progress | None = None,
    chain_apart_over: int | None = None,
) -> AuditReport:
    """Check the whole chain, then the live tables through their checkpoint against a replay."""
    return walk_and_compare(events, audit_db, progress=progress, chain_apart_over=chain_apart_over)
