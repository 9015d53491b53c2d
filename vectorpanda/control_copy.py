"""Copy an SQLite control plane into an empty PostgreSQL database, chain verified on both.

Rows move verbatim (the events with their seq, hashes and data text byte for
byte), so the copied chain verifies to the same head hash; the outbox moves
too, so nothing the old relay had not yet published is lost. The copy is one
transaction on the target: it lands whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, Table, func, insert, select

from coordinator.accounts.tables import metadata as accounts_metadata
from coordinator.accounts.uow import SqliteUnitOfWork
from eventlog.database import read_transaction, write_transaction
from eventlog.hashchain import ChainReport
from eventlog.store import SqliteEventStore, events_table, outbox_table

BATCH = 1000


class CopyRefused(RuntimeError):
    """The target already holds a control plane, or the source's chain does not verify."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    source: ChainReport | None = None
    target: ChainReport | None = None

    @property
    def ok(self) -> bool:
        return (
            self.source is not None
            and self.target is not None
            and self.source.ok
            and self.target.ok
            and self.source.events == self.target.events
            and self.source.head_hash == self.target.head_hash
        )


def _tables() -> list[Table]:
    # Parents before children: clients before api_keys, events before outbox.
    return [*accounts_metadata.sorted_tables, events_table, outbox_table]


def copy_control_plane(source: Engine, target: Engine) -> CopyReport:
    """Copy every control-plane table from ``source`` into the empty ``target``."""
    if source.dialect.name != "sqlite" or target.dialect.name != "postgresql":
        raise CopyRefused("the copy goes from an SQLite file to a PostgreSQL database")
    # Both schemas as a coordinator's start-up leaves them (an older file gains its columns).
    for engine in (source, target):
        SqliteUnitOfWork(engine).close()
    chain = SqliteEventStore(source).verify_chain()
    if not chain.ok:
        first = chain.mismatches[0]
        raise CopyRefused(f"the source chain does not verify: seq {first.seq}, {first.reason}")
    report = CopyReport(source=chain)
    with read_transaction(source) as src, write_transaction(target) as dst:
        for table in _tables():
            if dst.execute(select(func.count()).select_from(table)).scalar_one():
                raise CopyRefused(f"the target already has rows in {table.name}")
        for table in _tables():
            copied = 0
            query = select(table).order_by(*table.primary_key.columns)
            result = src.execution_options(yield_per=BATCH).execute(query)
            for part in result.partitions():
                dst.execute(insert(table), [dict(row._mapping) for row in part])
                copied += len(part)
            report.rows[table.name] = copied
    report.target = SqliteEventStore(target).verify_chain()
    return report
