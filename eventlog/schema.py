"""The control database's schema, managed by Alembic migrations on either dialect.

The revisions live in ``eventlog/migrations/versions``. ``upgrade`` brings a
database to the newest revision under the database's write lock (the same
lock appends take, so several coordinators starting at once on one empty
PostgreSQL database migrate it once, one after another). ``ensure_schema`` is
what a coordinator runs at start-up; it migrates only when that is safe:

- an up-to-date database: nothing to do (one read; Alembic is not even imported);
- an empty database: created at the newest revision;
- a database an earlier release made with its idempotent create-all code (no
  version table): adopted by revision 0001, which creates only what is missing
  and touches no row, then upgraded;
- an older revision: upgraded on SQLite (one coordinator owns the file); on
  PostgreSQL refused with ``SchemaOutOfDate`` (older coordinators may still be
  running on it: an operator runs ``vectorpanda migrate`` when they are gone);
- a revision this code does not know (a newer release migrated it): refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from eventlog.database import is_postgres, read_transaction, write_transaction

# The newest revision in migrations/versions (a unit test keeps the two in step).
HEAD = "0004"
VERSION_TABLE = "alembic_version"
MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaError(RuntimeError):
    """The control database's schema is not one this code can run on as it is."""


class SchemaOutOfDate(SchemaError):
    """An older revision on a shared database: ``vectorpanda migrate`` must upgrade it."""


class SchemaTooNew(SchemaError):
    """A revision this release does not know: a newer release migrated the database."""


@dataclass(frozen=True)
class SchemaState:
    revision: str | None
    tables: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.tables

    @property
    def legacy(self) -> bool:
        """Made by the create-all code of an earlier release: tables, no version."""
        return self.revision is None and "events" in self.tables

    @property
    def current(self) -> bool:
        return self.revision == HEAD


def schema_state(conn: Connection) -> SchemaState:
    tables = frozenset(inspect(conn).get_table_names())
    revision = None
    if VERSION_TABLE in tables:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return SchemaState(revision, tables - {VERSION_TABLE})


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision (one read; no Alembic)."""
    with read_transaction(engine) as conn:
        return schema_state(conn).current


def known_revisions() -> list[str]:
    """Every revision in the migrations directory, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def _scripts():  # type: ignore[no-untyped-def]
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def _upgrade_on(conn: Connection) -> None:
    # Imported here: the workers and the up-to-date start-up never load Alembic.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _check_known(state: SchemaState) -> None:
    if state.revision is not None and state.revision not in known_revisions():
        raise SchemaTooNew(
            f"the control database is at schema revision {state.revision}, which this "
            f"release does not know (newest here: {HEAD}): run the release that migrated it"
        )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest revision (adopting a create-all database); (before, after)."""
    with write_transaction(engine) as conn:
        state = schema_state(conn)
        _check_known(state)
        if not state.current:
            _upgrade_on(conn)
        return state.revision, schema_state(conn).revision or ""


def ensure_schema(engine: Engine) -> SchemaState:
    """Start-up: migrate when safe (see the module docstring), else raise SchemaError."""
    with read_transaction(engine) as conn:
        state = schema_state(conn)
    if state.current:
        return state
    with write_transaction(engine) as conn:
        state = schema_state(conn)  # again, under the lock: another process may have migrated
        if state.current:
            return state
        _check_known(state)
        shared_and_behind = is_postgres(engine) and state.revision is not None
        if shared_and_behind:
            raise SchemaOutOfDate(
                f"the control database is at schema revision {state.revision}, this release "
                f"needs {HEAD}: stop the coordinators of the older release, then run "
                "`vectorpanda migrate`"
            )
        _upgrade_on(conn)
        return schema_state(conn)
