"""Read-only queries on the audit projections (audit.sqlite3, or the PostgreSQL control
database) for the dashboard pages.

The pages see only ``projections.reads.AuditReads``; the composition root passes this
SQLite reader in.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError

from eventlog.database import read_transaction
from eventlog.events import BillingAnomalyDetected
from eventlog.sqlite import open_engine
from projections.reads import PAGE, AuditRow, UsageDay
from projections.tables import audit_log, census_index, usage


class AuditReader:
    """Queries the projections; an absent or not-yet-built database reads as empty."""

    def __init__(self, target: Path | Engine) -> None:
        self.path = target if isinstance(target, Path) else None
        self._engine: Engine | None = target if isinstance(target, Engine) else None
        self._lock = threading.Lock()

    def _rows(self, stmt: Any) -> list[Any]:
        if self.path is not None and not self.path.exists():
            return []
        with self._lock:
            if self._engine is None and self.path is not None:
                self._engine = open_engine(self.path, synchronous="NORMAL")
        assert self._engine is not None
        try:
            with read_transaction(self._engine) as conn:
                return list(conn.execute(stmt).all())
        except OperationalError:
            return []  # the projector has not created its tables yet

    def audit(
        self,
        client_id: str | None = None,
        type: str | None = None,
        before_seq: int | None = None,
        limit: int = PAGE,
    ) -> list[AuditRow]:
        """Newest first; ``client_id`` scopes it to one client's trail."""
        stmt = select(
            audit_log.c.seq,
            audit_log.c.occurred_at,
            audit_log.c.actor,
            audit_log.c.client_id,
            audit_log.c.type,
            audit_log.c.summary,
        )
        if client_id is not None:
            stmt = stmt.where(audit_log.c.client_id == client_id)
        if type:
            stmt = stmt.where(audit_log.c.type == type)
        if before_seq is not None:
            stmt = stmt.where(audit_log.c.seq < before_seq)
        stmt = stmt.order_by(audit_log.c.seq.desc()).limit(limit)
        return [AuditRow(**r._mapping) for r in self._rows(stmt)]

    def event_types(self) -> list[str]:
        stmt = select(audit_log.c.type).distinct().order_by(audit_log.c.type)
        return [r.type for r in self._rows(stmt)]

    def usage_days(self, client_id: str, since: str) -> list[UsageDay]:
        """Recorded usage per day since ``since`` (ISO date), oldest first."""
        day = func.substr(usage.c.period_start, 1, 10)
        stmt = (
            select(
                day.label("day"),
                func.sum(usage.c.requests).label("requests"),
                func.sum(usage.c.queries).label("queries"),
                func.max(usage.c.vectors_stored).label("vectors_stored"),
                func.max(usage.c.bytes_stored).label("bytes_stored"),
            )
            .where(usage.c.client_id == client_id, usage.c.period_start >= since)
            .group_by(day)
            .order_by(day)
        )
        return [UsageDay(**r._mapping) for r in self._rows(stmt)]

    def usage_totals(self, since: str) -> dict[str, tuple[int, int]]:
        """Per client since ``since``: (requests, queries)."""
        stmt = (
            select(
                usage.c.client_id,
                func.sum(usage.c.requests).label("requests"),
                func.sum(usage.c.queries).label("queries"),
            )
            .where(usage.c.period_start >= since)
            .group_by(usage.c.client_id)
        )
        return {r.client_id: (int(r.requests), int(r.queries)) for r in self._rows(stmt)}

    def census(self, limit: int = 10) -> list[dict[str, Any]]:
        stmt = select(census_index).order_by(census_index.c.seq.desc()).limit(limit)
        return [dict(r._mapping) for r in self._rows(stmt)]

    def anomalies(self, limit: int = 20) -> list[AuditRow]:
        return self.audit(type=BillingAnomalyDetected.event_type, limit=limit)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
