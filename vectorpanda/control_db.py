"""The control database engine for these settings: PostgreSQL or the SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from eventlog.database import open_control_engine, postgres_url
from vectorpanda.settings import Settings


def database_url(settings: Settings) -> str | None:
    """``VP_DATABASE_URL``, or None for the embedded SQLite file (never logged)."""
    secret = settings.database_url
    return secret.get_secret_value() if secret is not None else None


def control_engine(settings: Settings) -> Engine:
    """An engine on the control database these settings name."""
    return open_control_engine(database_url(settings), settings.control_db)


def control_location(settings: Settings) -> str:
    """Where the control database is, fit for a log line or an error (no password)."""
    url = database_url(settings)
    if url is None:
        return str(settings.control_db)
    return make_url(postgres_url(url)).render_as_string(hide_password=True)


def audit_event_log(settings: Settings) -> Any:
    """The event store the audit commands read; exits with a message when there is none."""
    from eventlog.store import SqliteEventStore

    if database_url(settings) is None and not settings.control_db.exists():
        raise SystemExit(f"vectorpanda audit: no event log at {settings.control_db}")
    return SqliteEventStore(control_engine(settings))


def audit_database(settings: Settings) -> Path | Engine:
    """Where the audit projections live: the PostgreSQL control database (an engine on
    it) when ``VP_DATABASE_URL`` is set, so every coordinator and projector shares one
    set of tables and one checkpoint; else their own file, ``audit.sqlite3``."""
    if database_url(settings) is None:
        return settings.audit_db
    return control_engine(settings)


def audit_location(settings: Settings) -> str:
    """Where the audit projections are, fit for a log line (no password)."""
    return str(settings.audit_db) if database_url(settings) is None else control_location(settings)


def dead_letters_location(settings: Settings) -> str:
    """Where the dead-letter record is, fit for an email (no password)."""
    if database_url(settings) is None:
        return str(settings.dead_letters_db)
    return f"table dead_letters in {control_location(settings)}"


def shared_store(settings: Settings, path: Path) -> Path | str:
    """Where a store that every coordinator shares lives: the PostgreSQL control
    database (its URL) when ``VP_DATABASE_URL`` is set, else its own SQLite file."""
    return database_url(settings) or path


def session_store(settings: Settings) -> Any:
    """The dashboard's sessions: the shared PostgreSQL table (migrated first) or the file."""
    from coordinator.sessions.store import SqliteSessionStore
    from eventlog.schema import ensure_schema

    if database_url(settings) is None:
        return SqliteSessionStore.at(settings.sessions_db)
    engine = control_engine(settings)
    ensure_schema(engine)
    return SqliteSessionStore(engine)
