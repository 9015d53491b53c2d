"""``vectorpanda migrate``: bring the control database's schema up to date, then stop.

With ``--from-sqlite PATH`` it instead copies an existing SQLite control plane
into the (empty) PostgreSQL database ``VP_DATABASE_URL`` names, verifying the
hash chain on both sides.

The schema is managed by Alembic migrations (``eventlog/migrations``) on
either dialect, run under the database's write lock: an empty database is
created at the newest revision, one made by an earlier release's create-all
start-up is adopted (nothing it holds is touched), an older revision is
upgraded. Coordinators migrate at start-up only when that is safe (see
``eventlog.schema``); on a shared PostgreSQL database an upgrade is this command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def cmd_migrate(args: argparse.Namespace) -> int:
    # Imported here, as below: every process the CLI starts (workers too) loads this module.
    from sqlalchemy import inspect

    from eventlog.database import read_transaction
    from eventlog.schema import SchemaError, upgrade
    from eventlog.store import SqliteEventSession
    from vectorpanda.control_db import control_engine, control_location
    from vectorpanda.settings import load_settings

    settings = load_settings(Path(args.data_dir) if args.data_dir else None)
    if args.from_sqlite:
        return _copy(settings, Path(args.from_sqlite))
    engine = control_engine(settings)
    try:
        started = time.monotonic()
        before, after = upgrade(engine)
        took = time.monotonic() - started
        with read_transaction(engine) as conn:
            tables = sorted(inspect(conn).get_table_names())
            head = SqliteEventSession(conn).head()
    except SchemaError as exc:
        print(f"vectorpanda migrate: refused: {exc}")
        return 1
    finally:
        engine.dispose()
    print(f"control database: {control_location(settings)} ({engine.dialect.name})")
    if before == after:
        print(f"schema is current at revision {after}")
    else:
        was = "an empty or create-all database" if before is None else f"revision {before}"
        print(f"schema migrated from {was} to revision {after} in {took:.2f} s")
    print(f"tables: {', '.join(tables)}")
    print(f"event log: {head.seq} events, head {head.hash[:16]}")
    return 0


def _copy(settings: Any, path: Path) -> int:
    from eventlog.sqlite import open_engine
    from vectorpanda.control_copy import CopyRefused, copy_control_plane
    from vectorpanda.control_db import control_engine, control_location, database_url

    if database_url(settings) is None:
        print("vectorpanda migrate: --from-sqlite needs VP_DATABASE_URL (the target) set")
        return 2
    if not path.is_file():
        print(f"vectorpanda migrate: no SQLite control database at {path}")
        return 2
    source, target = open_engine(path), control_engine(settings)
    try:
        report = copy_control_plane(source, target)
    except CopyRefused as exc:
        print(f"vectorpanda migrate: refused: {exc}")
        return 1
    finally:
        source.dispose()
        target.dispose()
    print(f"copied {path} into {control_location(settings)}")
    for name, count in report.rows.items():
        print(f"  {name}: {count} rows")
    assert report.source is not None and report.target is not None
    for side, chain in (("source", report.source), ("target", report.target)):
        verdict = "verifies" if chain.ok else "DOES NOT VERIFY"
        print(f"  {side} chain {verdict}: {chain.events} events, head {chain.head_hash[:16]}")
    return 0 if report.ok else 1


def add_migrate_command(sub: Any) -> None:
    migrate = sub.add_parser(
        "migrate", help="create or upgrade the control database schema (VP_DATABASE_URL or SQLite)"
    )
    migrate.add_argument("--data-dir", default=None, help="where the env file is (VP_DATA_DIR)")
    migrate.add_argument(
        "--from-sqlite",
        default=None,
        metavar="PATH",
        help="copy this control.sqlite3 into the empty VP_DATABASE_URL database, chain verified",
    )
    migrate.set_defaults(func=cmd_migrate)
