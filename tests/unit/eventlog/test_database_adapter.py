"""The control database adapter's choices that need no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventlog.database import OrderedText, open_control_engine
from tests.postgres import _unreachable


def test_without_a_url_the_engine_is_the_sqlite_file(tmp_path: Path) -> None:
    engine = open_control_engine(None, tmp_path / "control.sqlite3")
    try:
        assert engine.dialect.name == "sqlite"
        assert engine.url.database == str(tmp_path / "control.sqlite3")
    finally:
        engine.dispose()


def test_a_postgres_url_makes_a_psycopg_engine_without_connecting(tmp_path: Path) -> None:
    engine = open_control_engine("postgresql://vp:pw@127.0.0.1:1/vp", tmp_path / "x.sqlite3")
    try:
        assert engine.dialect.name == "postgresql" and engine.driver == "psycopg"
        assert "pw" not in repr(engine) and "pw" not in str(engine.url)
    finally:
        engine.dispose()
    assert not (tmp_path / "x.sqlite3").exists()


def test_ordered_text_is_byte_ordered_on_postgresql_and_plain_on_sqlite() -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    assert OrderedText.compile(dialect=postgresql.dialect()) == 'TEXT COLLATE "C"'
    assert OrderedText.compile(dialect=sqlite.dialect()) == "TEXT"


def test_an_unreachable_server_skips_locally_and_fails_under_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _unreachable("refused")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _unreachable("refused")


def test_writers_to_one_database_share_one_process_lock(tmp_path: Path) -> None:
    """The accounts, the event store and the relay's engine queue on one lock per file."""
    from eventlog.database import process_write_lock
    from eventlog.sqlite import open_engine

    control = tmp_path / "control.sqlite3"
    durable, relay = open_engine(control), open_engine(control, synchronous="NORMAL")
    other = open_engine(tmp_path / "audit.sqlite3")
    assert process_write_lock(durable) is process_write_lock(relay)
    assert process_write_lock(durable) is not process_write_lock(other)
    for engine in (durable, relay, other):
        engine.dispose()
