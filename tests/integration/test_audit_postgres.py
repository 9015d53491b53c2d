"""The audit projection and the dead-letter record on PostgreSQL: the shared contract
plus what only the server shows (the tables live in the control database itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from eventlog.database import open_control_engine
from eventlog.schema import HEAD, ensure_schema
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditProjection, AuditTarget
from projections.tables import PROJECTED
from tests.unit.projections.audit_contract import AuditProjectionContract, append_story

pytestmark = pytest.mark.integration


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


@pytest.fixture
def pg_engine(pg_url: str, engines: list[Engine], tmp_path: Path) -> Callable[[], Engine]:
    def make() -> Engine:
        engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
        engines.append(engine)
        return engine

    return make


class TestPostgresAuditProjection(AuditProjectionContract):
    @pytest.fixture
    def make_target(self, pg_engine: Callable[[], Engine]) -> Callable[[], AuditTarget]:
        return pg_engine

    @pytest.fixture
    def log(self, pg_engine: Callable[[], Engine]) -> SqliteEventStore:
        return append_story(SqliteEventStore(pg_engine()))

    @pytest.fixture
    def dead_letters_at(self, pg_url: str) -> Path | str:
        return pg_url


def test_the_audit_tables_come_with_the_control_databases_migrations(
    pg_engine: Callable[[], Engine], tmp_path: Path
) -> None:
    engine = pg_engine()
    state = ensure_schema(engine)
    assert state.revision == HEAD == "0004"
    names = set(inspect(engine).get_table_names())
    assert {t.name for t in PROJECTED} | {"checkpoints", "dead_letters"} <= names
    with engine.connect() as conn:
        kinds = dict(
            conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'usage'"
                )
            ).all()
        )
    assert kinds["bytes_stored"] == "bigint" and kinds["seq"] == "bigint"
    AuditProjection.at(pg_engine()).close()
    assert not any(tmp_path.iterdir())  # no audit.sqlite3 anywhere
