"""The whole audit verdict: chain and tables (full or incremental) plus the anchors.

Shared by ``vectorpanda audit verify`` and ``GET /admin/v1/audit/verify``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from eventlog.anchors import AnchorReport, check_anchors
from eventlog.hashchain import Mismatch
from eventlog.scan import snapshot_cursor
from eventlog.store import SqliteEventStore
from projections.audit_checkpoint import verify_since_checkpoint
from projections.audit_store import AuditTarget
from projections.replay import AuditReport, Progress, verify_audit


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    report: AuditReport
    anchors: AnchorReport | None

    @property
    def mismatches(self) -> list[Mismatch]:
        extra = self.anchors.mismatches if self.anchors is not None else []
        return sorted([*self.report.mismatches, *extra], key=lambda m: m.seq)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> dict[str, Any]:
        """The JSON summary: the verdict, how far it reached and the first bad seq."""
        r, mismatches = self.report, self.mismatches
        out: dict[str, Any] = {
            "ok": not mismatches,
            "mode": "incremental" if r.since_seq else "full",
            "since_seq": r.since_seq,
            "events": r.events,
            "head_seq": r.head_seq,
            "head_hash": r.head_hash,
            "checkpoint": r.checkpoint,
            "verified_seq": r.verified_seq,
            "first_bad_seq": mismatches[0].seq if mismatches else None,
            "mismatches": [asdict(m) for m in mismatches],
            "tables": r.tables,
        }
        if self.anchors is not None:
            out["anchors"] = {
                "checked": self.anchors.checked,
                "last_anchored_seq": self.anchors.last_anchored_seq,
                "last_anchor": self.anchors.last_anchor,
            }
        return out


def run_verify(
    store: SqliteEventStore,
    audit_db: AuditTarget,
    *,
    since_checkpoint: bool = False,
    anchors_dir: Path | None = None,
    anchor_key: Ed25519PublicKey | None = None,
    progress: Progress | None = None,
    chain_apart_over: int | None = None,
) -> AuditVerdict:
    """Verify the log and the audit tables, then every anchor in ``anchors_dir`` (if given)."""
    if since_checkpoint:
        report = verify_since_checkpoint(store, audit_db, progress)
    else:
        report = verify_audit(store, audit_db, progress, chain_apart_over)
    anchors = None
    if anchors_dir is not None and anchor_key is not None:
        with snapshot_cursor(store.engine) as cursor:
            anchors = check_anchors(cursor, anchors_dir, anchor_key)
    return AuditVerdict(report, anchors)
