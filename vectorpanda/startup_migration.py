"""A coordinator's start-up migration, run in a short-lived helper process.

Alembic, with the Mako and Pygments it imports, is about 11 MiB of a process's memory
once loaded, and a module cannot be unloaded: a coordinator that created or upgraded
its control database at start kept Alembic for its whole life (issue 11, RSS). So the
coordinator only reads the schema's revision (``eventlog.schema.schema_is_current``,
no Alembic); when the database is not current, ``python -m
vectorpanda.startup_migration`` runs ``eventlog.schema.ensure_schema`` on it, the very
start-up step the coordinator's stores take, and exits. A refusal (``SchemaError``)
comes back as the same exception with the same message; Alembic's log lines go to
stderr as the coordinator's own did.
"""

from __future__ import annotations

import json
import subprocess  # nosec B404
import sys
from pathlib import Path

from sqlalchemy import Engine

from eventlog.database import open_control_engine
from eventlog.schema import SchemaError, SchemaOutOfDate, SchemaTooNew, schema_is_current

REFUSED_EXIT = 3
_REFUSALS: dict[str, type[SchemaError]] = {
    cls.__name__: cls for cls in (SchemaError, SchemaOutOfDate, SchemaTooNew)
}


def ensure_schema_in_helper(engine: Engine, url: str | None, sqlite_path: Path) -> None:
    """Make the control database current as ``ensure_schema`` would, Alembic elsewhere.

    ``engine`` is the caller's own on the database that ``url`` (PostgreSQL) or
    ``sqlite_path`` names; it is only read. Raises what ``ensure_schema`` raises when
    the database cannot be migrated at start-up.
    """
    if schema_is_current(engine):
        return
    # The URL may hold a password: it goes through stdin, never argv or the environment.
    # A fixed argv: this interpreter and this module.
    done = subprocess.run(  # nosec B603
        [sys.executable, "-m", "vectorpanda.startup_migration"],
        input=json.dumps({"url": url, "sqlite_path": str(sqlite_path)}),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode == REFUSED_EXIT:
        refusal = json.loads(done.stdout)
        raise _REFUSALS[refusal["kind"]](refusal["message"])
    if done.returncode != 0:
        raise RuntimeError(
            f"migrating the control database failed (helper process exit {done.returncode}; "
            "its error is above)"
        )


def main() -> int:
    """The helper process: read where the database is, migrate it, report a refusal."""
    from eventlog.schema import ensure_schema
    from vectorpanda.process_setup import configure_worker_logging

    request = json.loads(sys.stdin.read())
    configure_worker_logging()  # Alembic's INFO lines, as the coordinator printed them
    engine = open_control_engine(request["url"], Path(request["sqlite_path"]))
    try:
        ensure_schema(engine)
    except SchemaError as exc:
        print(json.dumps({"kind": type(exc).__name__, "message": str(exc)}))
        return REFUSED_EXIT
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
