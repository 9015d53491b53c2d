"""What each event means for the audit tables: pure functions, no database.

``fold(stored, state)`` returns the rows one event adds and the client's new
current state. Every event gets an ``audit_log`` row, also one this code
cannot read (an unknown type or a future version): the audit log never skips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from eventlog.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    AuditCheckpointRecorded,
    BackupFailed,
    BackupPruned,
    BackupRestored,
    BackupTaken,
    BillingAnomalyDetected,
    CensusSnapshotTaken,
    ClientCreated,
    ClientDeleted,
    ClientPaused,
    ClientResumed,
    ClientStatus,
    CollectionCreated,
    CollectionDeleted,
    Event,
    InvoiceIssued,
    OperatorIssued,
    OperatorRevoked,
    PaymentFailed,
    PaymentReceived,
    RestoreDrillCompleted,
    TierChanged,
    UnknownEventType,
    UnknownEventVersion,
    UsageRecorded,
)
from eventlog.hashchain import canonical_json
from eventlog.records import StoredEvent

log = logging.getLogger("vectorpanda.projections")


# ClientState holds plain str, never the enums: its rows go to the database and, in a
# replay, to the writer process by marshal. Converted here, once, where states are built.
_ACTIVE = str(ClientStatus.ACTIVE)
_PAUSED = str(ClientStatus.PAUSED)
_DELETED = str(ClientStatus.DELETED)


@dataclass(frozen=True, slots=True)
class ClientState:
    client_id: str
    name: str
    email: str
    tier: str
    status: str
    updated_seq: int


@dataclass(slots=True)
class Effects:
    """Rows to insert, by table name, and the client's state after the event."""

    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    state: ClientState | None = None


def _json(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def summarise(event: Event) -> str:
    """One human line for the audit log."""
    match event:
        case ClientCreated():
            return f"client created: {event.name} <{event.email}> on the {event.tier} tier"
        case ApiKeyIssued():
            limits = "".join(
                (
                    f", expires {event.expires_at}" if event.expires_at else "",
                    f", from {','.join(event.allowed_cidrs)}" if event.allowed_cidrs else "",
                )
            )
            return f"API key {event.key_id} issued with scopes {','.join(event.scopes)}{limits}"
        case ApiKeyRevoked():
            return f"API key {event.key_id} revoked"
        case TierChanged():
            why = f": {event.reason}" if event.reason else ""
            return f"tier changed from {event.from_tier} to {event.to_tier}{why}"
        case ClientPaused():
            how = "automatically" if event.automatic else "by hand"
            return f"client paused {how}: {event.reason}"
        case ClientResumed():
            return "client resumed" + (f": {event.reason}" if event.reason else "")
        case ClientDeleted():
            return "client deleted" + (f": {event.reason}" if event.reason else "")
        case OperatorIssued():
            return f"operator {event.name} <{event.email}> issued an admin token"
        case OperatorRevoked():
            why = f": {event.reason}" if event.reason else ""
            return f"operator {event.name}'s admin token revoked{why}"
        case CollectionCreated():
            return (
                f"collection {event.name} created ({event.dimension}-d {event.metric}, "
                f"{event.index})"
            )
        case CollectionDeleted():
            return f"collection {event.name} deleted"
        case InvoiceIssued() | PaymentReceived() | PaymentFailed():
            kind = type(event).event_type.split(".", 1)[1].replace("_", " ")
            amount = f"{event.amount_cents / 100:.2f} {event.currency}"
            why = f": {event.reason}" if event.reason else ""
            return f"{kind}: {amount} (ref {event.reference}){why}"
        case UsageRecorded():
            return f"usage {event.period_start}..{event.period_end}: {event.requests} requests"
        case BillingAnomalyDetected():
            return (
                f"billing anomaly on {event.metric}: {event.observed:g} vs baseline "
                f"{event.baseline:g} over {event.window_hours} h"
            )
        case CensusSnapshotTaken():
            return f"census snapshot of {event.clients} clients: {event.archive}"
        case AuditCheckpointRecorded():
            return f"audit verified ({event.mode}) through seq {event.verified_seq}"
        case BackupTaken():
            return (
                f"{event.kind} {event.backup_id} taken: {len(event.collections)} collections, "
                f"{event.vectors} vectors, {event.bytes} bytes, log head {event.head_seq}"
            )
        case BackupFailed():
            return f"{event.kind} {event.backup_id} failed: {event.reason}"
        case BackupPruned():
            return f"backup {event.backup_id} pruned: {event.reason}"
        case BackupRestored():
            pairs = ", ".join(
                f"{a}->{b}" for a, b in zip(event.collections, event.into, strict=False)
            )
            return f"restored from {event.backup_id}: {pairs}"
        case RestoreDrillCompleted():
            verdict = "passed" if event.ok else f"FAILED ({len(event.failures)} backups)"
            return f"restore drill {verdict}: {event.backups} backups, {event.bytes} bytes"
    return type(event).event_type


def _audit_row(stored: StoredEvent, summary: str) -> dict[str, Any]:
    return {
        "seq": stored.seq,
        "event_id": stored.event_id,
        "occurred_at": stored.occurred_at,
        "actor": stored.actor,
        "client_id": stored.client_id,
        "type": stored.type,
        "schema_version": stored.schema_version,
        "summary": summary,
        "data": _json(stored.data),
        "hash": stored.hash,
    }


def fold(stored: StoredEvent, state: ClientState | None) -> Effects:
    """The audit rows for one event, given the client's state before it."""
    try:
        event = stored.to_event()
    except (UnknownEventType, UnknownEventVersion, ValueError) as exc:
        log.error("seq %d (%s) cannot be read by this code: %s", stored.seq, stored.type, exc)
        return Effects(rows=[("audit_log", _audit_row(stored, f"unreadable {stored.type}"))])
    effects = Effects(rows=[("audit_log", _audit_row(stored, summarise(event)))])
    base = {"seq": stored.seq, "occurred_at": stored.occurred_at, "actor": stored.actor}
    cid = stored.client_id

    def history(change: str, new: ClientState, detail: str | None = None) -> None:
        effects.state = new
        effects.rows.append(
            (
                "client_history",
                {
                    **base,
                    "client_id": new.client_id,
                    "change": change,
                    "tier": new.tier,
                    "status": new.status,
                    "detail": detail,
                },
            )
        )

    match event:
        case ClientCreated():
            new = ClientState(
                event.client_id,
                event.name,
                event.email,
                str(event.tier),
                _ACTIVE,
                stored.seq,
            )
            history("created", new)
        case TierChanged() if state is not None:
            history(
                "tier_changed",
                replace(state, tier=str(event.to_tier), updated_seq=stored.seq),
                f"{event.from_tier}->{event.to_tier}",
            )
        case ClientPaused() if state is not None:
            history(
                "paused",
                replace(state, status=_PAUSED, updated_seq=stored.seq),
                event.reason,
            )
        case ClientResumed() if state is not None:
            history("resumed", replace(state, status=_ACTIVE, updated_seq=stored.seq))
        case ClientDeleted() if state is not None:
            history("deleted", replace(state, status=_DELETED, updated_seq=stored.seq))
        case ApiKeyIssued():
            effects.rows.append(
                (
                    "key_history",
                    {
                        **base,
                        "client_id": cid,
                        "key_id": event.key_id,
                        "action": "issued",
                        "scopes": _json(list(event.scopes)),
                        "label": event.label,
                        "expires_at": event.expires_at,
                        "allowed_cidrs": (
                            _json(list(event.allowed_cidrs)) if event.allowed_cidrs else None
                        ),
                    },
                )
            )
        case ApiKeyRevoked():
            effects.rows.append(
                (
                    "key_history",
                    {
                        **base,
                        "client_id": cid,
                        "key_id": event.key_id,
                        "action": "revoked",
                        "scopes": None,
                        "label": None,
                        "expires_at": None,
                        "allowed_cidrs": None,
                    },
                )
            )
        case InvoiceIssued() | PaymentReceived() | PaymentFailed():
            detail = event.reason if isinstance(event, PaymentFailed) else None
            effects.rows.append(
                (
                    "billing_ledger",
                    {
                        **base,
                        "client_id": cid,
                        "kind": type(event).event_type.split(".", 1)[1],
                        "amount_cents": event.amount_cents,
                        "currency": event.currency,
                        "reference": event.reference,
                        "detail": detail,
                    },
                )
            )
        case BillingAnomalyDetected():
            detail = _json(
                {
                    "metric": event.metric,
                    "observed": event.observed,
                    "baseline": event.baseline,
                    "window_hours": event.window_hours,
                }
            )
            effects.rows.append(
                (
                    "billing_ledger",
                    {
                        **base,
                        "client_id": cid,
                        "kind": "anomaly_detected",
                        "amount_cents": None,
                        "currency": None,
                        "reference": None,
                        "detail": detail,
                    },
                )
            )
        case UsageRecorded():
            # ``rejected`` (v2) is in the log and GET /admin/v1/usage; the table predates it.
            figures = event.model_dump(exclude={"client_id", "rejected"})
            effects.rows.append(("usage", {"seq": stored.seq, "client_id": cid, **figures}))
        case CollectionCreated():
            spec = _json(
                {"dimension": event.dimension, "metric": event.metric, "index": event.index}
            )
            effects.rows.append(
                (
                    "collection_history",
                    {
                        **base,
                        "client_id": cid,
                        "name": event.name,
                        "action": "created",
                        "spec": spec,
                    },
                )
            )
        case CollectionDeleted():
            effects.rows.append(
                (
                    "collection_history",
                    {
                        **base,
                        "client_id": cid,
                        "name": event.name,
                        "action": "deleted",
                        "spec": None,
                    },
                )
            )
        case CensusSnapshotTaken():
            effects.rows.append(
                (
                    "census_index",
                    {
                        "seq": stored.seq,
                        "occurred_at": stored.occurred_at,
                        "archive": event.archive,
                        "sha256": event.sha256,
                        "clients": event.clients,
                    },
                )
            )
    return effects
