"""What the dashboard reads of the audit projections: rows and the reader's interface.

Pure (no SQLAlchemy): the API types against ``AuditReads``; the SQLite reader is
``projections.audit_reads.AuditReader``, built by the composition root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

PAGE = 50


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    occurred_at: str
    actor: str
    client_id: str | None
    type: str
    summary: str


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: str  # YYYY-MM-DD
    requests: int
    queries: int
    vectors_stored: int
    bytes_stored: int


class AuditReads(Protocol):
    """Blocking queries (the pages run them in a thread); a missing database reads as empty."""

    def audit(
        self,
        client_id: str | None = None,
        type: str | None = None,
        before_seq: int | None = None,
        limit: int = PAGE,
    ) -> list[AuditRow]:
        """Newest first; ``client_id`` scopes it to one client's trail."""
        ...

    def event_types(self) -> list[str]: ...

    def usage_days(self, client_id: str, since: str) -> list[UsageDay]:
        """Recorded usage per day since ``since`` (ISO date), oldest first."""
        ...

    def usage_totals(self, since: str) -> dict[str, tuple[int, int]]:
        """Per client since ``since``: (requests, queries)."""
        ...

    def census(self, limit: int = 10) -> list[dict[str, Any]]: ...

    def anomalies(self, limit: int = 20) -> list[AuditRow]: ...

    def close(self) -> None: ...
