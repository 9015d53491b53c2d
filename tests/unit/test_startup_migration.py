"""A coordinator's start-up migration runs in a helper process (vectorpanda/startup_migration.py):
the database ends up as ``ensure_schema`` leaves it, a refusal is the same exception, and
the coordinator's own process never loads Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventlog.database import open_control_engine
from eventlog.schema import HEAD, SchemaTooNew, ensure_schema, schema_is_current, upgrade
from vectorpanda.startup_migration import ensure_schema_in_helper


def test_an_empty_database_is_created_at_the_newest_revision(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite3"
    engine = open_control_engine(None, path)
    try:
        assert not schema_is_current(engine)
        ensure_schema_in_helper(engine, None, path)
        assert schema_is_current(engine)
        assert ensure_schema(engine).revision == HEAD
    finally:
        engine.dispose()


def test_a_revision_this_release_does_not_know_is_refused_with_the_same_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "control.sqlite3"
    engine = open_control_engine(None, path)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        with pytest.raises(SchemaTooNew) as in_process:
            ensure_schema(engine)
        with pytest.raises(SchemaTooNew) as in_helper:
            ensure_schema_in_helper(engine, None, path)
        assert str(in_helper.value) == str(in_process.value)
    finally:
        engine.dispose()


def test_the_calling_process_never_loads_alembic(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite3"
    probe = (
        "import sys; from pathlib import Path; "
        "from eventlog.database import open_control_engine; "
        "from vectorpanda.startup_migration import ensure_schema_in_helper as helper; "
        "from coordinator.accounts.uow import SqliteUnitOfWork; "
        f"path = Path({str(path)!r}); engine = open_control_engine(None, path); "
        "helper(engine, None, path); SqliteUnitOfWork(engine).close(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
    engine = open_control_engine(None, path)
    try:
        assert schema_is_current(engine)
    finally:
        engine.dispose()
