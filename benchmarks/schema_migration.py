"""Migration time on a 100k-event control plane: adoption of a create-all database by the
Alembic migrations (SQLite and PostgreSQL), and the SQLite -> PostgreSQL copy.

    .venv/bin/python -m benchmarks.schema_migration [--events 100000] [--pg URL]

``--pg`` names a maintenance database (default: the test server's); a throwaway
database is created there and dropped afterwards.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from coordinator.accounts.tables import metadata as accounts_metadata
from eventlog.database import install_append_only, open_control_engine, write_transaction
from eventlog.schema import ensure_schema
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventSession, SqliteEventStore
from eventlog.store import metadata as event_metadata
from tests.unit.eventlog.event_store_contract import created
from vectorpanda.control_copy import copy_control_plane


def fill_the_old_way(engine, events: int) -> None:  # type: ignore[no-untyped-def]
    """What a release before Alembic left: create_all, triggers, ``events`` events."""
    with write_transaction(engine) as conn:
        event_metadata.create_all(conn)
        accounts_metadata.create_all(conn)
        install_append_only(conn)
    batch = 5000
    for start in range(0, events, batch):
        with write_transaction(engine) as conn:
            session = SqliteEventSession(conn)
            session.append([created(n) for n in range(start, min(events, start + batch))], "bench")


def timed(label: str, fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    took = time.perf_counter() - started
    print(f"{label}: {took:.3f} s")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vp-migrate-bench-"))
    sqlite = open_engine(tmp / "control.sqlite3")
    fill_the_old_way(sqlite, args.events)
    timed(f"SQLite adopt+upgrade ({args.events} events)", lambda: ensure_schema(sqlite))
    timed("SQLite start-up, schema current", lambda: ensure_schema(sqlite))

    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    names = [f"vp_bench_{secrets.token_hex(4)}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        urls = [make_url(args.pg).set(database=n).render_as_string(False) for n in names]
        legacy = open_control_engine(urls[0], tmp / "unused")
        fill_the_old_way(legacy, args.events)
        timed(f"PostgreSQL adopt+upgrade ({args.events} events)", lambda: ensure_schema(legacy))
        timed("PostgreSQL start-up, schema current", lambda: ensure_schema(legacy))
        legacy.dispose()
        target = open_control_engine(urls[1], tmp / "unused")
        report = None

        def copy() -> None:
            nonlocal report
            report = copy_control_plane(sqlite, target)

        timed(f"SQLite -> PostgreSQL copy, chain verified on both ({args.events} events)", copy)
        assert report is not None and report.ok
        assert SqliteEventStore(target).verify_chain().events == args.events
        target.dispose()
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
