"""``vectorpanda migrate``: bring the control database's schema up to date, then stop.

The same idempotent install every coordinator runs at start-up (tables, later
indexes and columns, the append-only triggers), for either dialect, under the
database's write lock; run it once before starting several coordinators on a
new PostgreSQL database. Not Alembic: see docs/architecture.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlalchemy import inspect


def cmd_migrate(args: argparse.Namespace) -> int:
    from coordinator.accounts.uow import SqliteUnitOfWork
    from eventlog.database import read_transaction
    from eventlog.store import SqliteEventSession
    from vectorpanda.control_db import control_engine, control_location
    from vectorpanda.settings import load_settings

    settings = load_settings(Path(args.data_dir) if args.data_dir else None)
    engine = control_engine(settings)
    uow = SqliteUnitOfWork(engine)  # installs or upgrades the schema, then commits
    try:
        with read_transaction(engine) as conn:
            tables = sorted(inspect(conn).get_table_names())
            head = SqliteEventSession(conn).head()
    finally:
        uow.close()
    print(f"control database: {control_location(settings)} ({engine.dialect.name})")
    print(f"schema is current: {', '.join(tables)}")
    print(f"event log: {head.seq} events, head {head.hash[:16]}")
    return 0


def add_migrate_command(sub: Any) -> None:
    migrate = sub.add_parser(
        "migrate", help="create or upgrade the control database schema (VP_DATABASE_URL or SQLite)"
    )
    migrate.add_argument("--data-dir", default=None, help="where the env file is (VP_DATA_DIR)")
    migrate.set_defaults(func=cmd_migrate)
