"""Alembic migrations of the control database: empty SQLite, empty PostgreSQL, old data dirs."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from coordinator.accounts import Accounts, CreateClient
from coordinator.accounts.tables import metadata as accounts_metadata
from coordinator.accounts.uow import SqliteUnitOfWork
from eventlog.database import install_append_only, open_control_engine, write_transaction
from eventlog.schema import (
    HEAD,
    SchemaOutOfDate,
    SchemaTooNew,
    ensure_schema,
    known_revisions,
    schema_state,
    upgrade,
)
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventSession, SqliteEventStore
from eventlog.store import metadata as event_metadata
from tests.unit.eventlog.event_store_contract import created
from vectorpanda.cli import main
from vectorpanda.settings import ENV_FILE_NAME

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures"
OLD = json.loads((FIXTURES / "control_before_alembic.json").read_text())
CONTROL_TABLES = {"events", "outbox", "clients", "api_keys", "operators", "client_data_keys"}
SHARED_TABLES = {
    "consumer_checkpoints",
    "notifier_contacts",
    "notifier_outbox",
    "dashboard_sessions",
    "apscheduler_jobs",
    # 0003: the audit projections and the dead-letter record
    "audit_log",
    "client_state",
    "client_history",
    "key_history",
    "billing_ledger",
    "usage",
    "collection_history",
    "census_index",
    "checkpoints",
    "dead_letters",
    # 0004: the coordinator group's members (PostgreSQL only, like 0003)
    "coordinator_members",
}


def shape(engine: Engine) -> dict[str, Any]:
    """Columns (name, type, nullability), indexes and unique constraints of each table."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(CONTROL_TABLES):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)
            ],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table)
            ),
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
        }
    return out


def create_all_the_old_way(engine: Engine) -> None:
    """What every start-up did before Alembic: create_all plus the append-only triggers."""
    with write_transaction(engine) as conn:
        event_metadata.create_all(conn)
        accounts_metadata.create_all(conn)
        install_append_only(conn)


def test_head_is_the_newest_revision_in_the_directory() -> None:
    assert known_revisions()[-1] == HEAD
    assert known_revisions()[0] == "0001"


def test_empty_sqlite_migrates_to_the_same_schema_the_create_all_code_made(
    tmp_path: Path,
) -> None:
    migrated = open_engine(tmp_path / "new.sqlite3")
    assert upgrade(migrated) == (None, HEAD)
    assert upgrade(migrated) == (HEAD, HEAD)  # a second run finds it current
    old = open_engine(tmp_path / "old.sqlite3")
    create_all_the_old_way(old)
    assert shape(migrated) == shape(old)
    names = set(inspect(migrated).get_table_names())
    assert names == CONTROL_TABLES | {"alembic_version"}  # the shared stores: own files
    triggers = sqlite3.connect(tmp_path / "new.sqlite3").execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    )
    assert {r[0] for r in triggers} == {"events_no_update", "events_no_delete"}
    store = SqliteEventStore(migrated)
    store.append([created(1)], actor="admin")
    assert store.verify_chain().ok


def test_empty_postgresql_migrates_with_the_shared_stores_and_the_triggers(
    pg_url: str, tmp_path: Path
) -> None:
    engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    try:
        assert upgrade(engine) == (None, HEAD)
        names = set(inspect(engine).get_table_names())
        assert names == CONTROL_TABLES | SHARED_TABLES | {"alembic_version"}
        store = SqliteEventStore(engine)
        store.append([created(1)], actor="admin")
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM events")
        with engine.connect() as conn:
            assert schema_state(conn).current
    finally:
        engine.dispose()


def test_postgresql_schema_matches_the_create_all_code(pg_url: str, tmp_path: Path) -> None:
    engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    try:
        create_all_the_old_way(engine)
        old = shape(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
        upgrade(engine)
        assert shape(engine) == old
    finally:
        engine.dispose()


async def test_a_data_dir_from_the_create_all_release_is_adopted_without_loss(
    tmp_path: Path,
) -> None:
    db = tmp_path / "control.sqlite3"
    shutil.copy(FIXTURES / "control_before_alembic.sqlite3", db)
    before = sqlite3.connect(db)
    rows = {t: before.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in CONTROL_TABLES}
    before.close()
    assert schema_state(open_engine(db).connect()).legacy

    adopting = Accounts(db, OLD["pepper"].encode(), cache_size=10)  # start-up adopts it
    await adopting.close()
    after = sqlite3.connect(db)
    try:
        assert after.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        for table, old_rows in rows.items():
            assert after.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() == old_rows
    finally:
        after.close()

    accounts = Accounts(db, OLD["pepper"].encode(), cache_size=10)
    try:
        report = await accounts.verify_chain()
        assert report.ok and report.events == OLD["events"]
        assert report.head_hash == OLD["head_hash"]
        principal = await accounts.authenticate(OLD["kept_api_key"])
        assert principal is not None and principal.client_id == OLD["client_id"]
        await accounts.handle(CreateClient("After", "a@after.io"))
        assert (await accounts.verify_chain()).events == OLD["events"] + 1
    finally:
        await accounts.close()


def test_an_older_create_all_file_gains_the_later_columns_and_index(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    shutil.copy(FIXTURES / "control_before_alembic.sqlite3", db)
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP INDEX ix_events_client_time")
    for column in ("last_used_at", "allowed_cidrs", "expires_at"):
        raw.execute(f"ALTER TABLE api_keys DROP COLUMN {column}")
    raw.close()
    engine = open_engine(db)
    ensure_schema(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("api_keys")}
    assert {"last_used_at", "allowed_cidrs", "expires_at"} <= columns
    assert "ix_events_client_time" in {i["name"] for i in inspect(engine).get_indexes("events")}
    assert SqliteEventStore(engine).verify_chain().events == OLD["events"]


def test_a_create_all_postgresql_database_is_adopted_with_its_events(
    pg_url: str, tmp_path: Path
) -> None:
    engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    try:
        create_all_the_old_way(engine)
        with write_transaction(engine) as conn:
            SqliteEventSession(conn).append([created(1), created(2)], actor="admin")
        with engine.connect() as conn:
            assert schema_state(conn).legacy
        uow = SqliteUnitOfWork(engine)  # a coordinator's start-up
        uow.close()
        store = SqliteEventStore(engine)
        report = store.verify_chain()
        assert report.ok and report.events == 2
        with engine.connect() as conn:
            assert schema_state(conn).current
        assert set(inspect(engine).get_table_names()) >= SHARED_TABLES
    finally:
        engine.dispose()


def test_postgresql_behind_head_is_refused_at_start_up_and_upgraded_by_migrate(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("VP_ENV_FILE", raising=False)
    monkeypatch.delenv("VP_DATABASE_URL", raising=False)
    engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    try:
        upgrade(engine)
        with engine.begin() as conn:  # as a database left at revision 0001 would be
            for table in SHARED_TABLES:
                conn.exec_driver_sql(f"DROP TABLE {table}")
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        with pytest.raises(SchemaOutOfDate, match="vectorpanda migrate"):
            SqliteUnitOfWork(engine)
        (tmp_path / ENV_FILE_NAME).write_text(f"VP_DATABASE_URL={pg_url}\n")
        (tmp_path / ENV_FILE_NAME).chmod(0o600)
        # A command that opens the log says so and exits, without a traceback.
        assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 2
        said = capsys.readouterr().err
        assert "refusing to start" in said and "vectorpanda migrate" in said
        assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
        assert f"from revision 0001 to revision {HEAD}" in capsys.readouterr().out
        SqliteUnitOfWork(engine).close()
        assert set(inspect(engine).get_table_names()) >= SHARED_TABLES
    finally:
        engine.dispose()


def test_a_revision_this_release_does_not_know_is_refused(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "control.sqlite3")
    upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaTooNew, match="9999"):
        SqliteEventStore(engine)


def test_concurrent_start_ups_on_an_empty_postgresql_database_migrate_it_once(
    pg_url: str, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engines = [open_control_engine(pg_url, tmp_path / "unused.sqlite3") for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            states = list(pool.map(ensure_schema, engines))
        assert all(s.current for s in states)
        with engines[0].connect() as conn:
            count = conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar()
        assert count == 1
    finally:
        for engine in engines:
            engine.dispose()
