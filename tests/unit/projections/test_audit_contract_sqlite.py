"""The audit projection's contract on the embedded default: its own SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditTarget
from tests.unit.projections.audit_contract import AuditProjectionContract, append_story


class TestSqliteAuditProjection(AuditProjectionContract):
    @pytest.fixture
    def make_target(self, tmp_path: Path) -> Callable[[], AuditTarget]:
        return lambda: tmp_path / "audit.sqlite3"

    @pytest.fixture
    def log(self, tmp_path: Path) -> SqliteEventStore:
        return append_story(SqliteEventStore(open_engine(tmp_path / "control.sqlite3")))

    @pytest.fixture
    def dead_letters_at(self, tmp_path: Path) -> Path | str:
        return tmp_path / "dead_letters.sqlite3"
