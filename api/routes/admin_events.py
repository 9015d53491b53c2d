"""Admin plane: the event log and its hash-chain audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AccountsDep, AdminActor, AuditVerifyDep
from api.errors import Invalid
from api.routing import OrjsonRoute
from api.schemas_admin import ChainReportOut, EventPageOut, MismatchOut, event_out
from eventlog.events import CLIENT_ID_PATTERN, EVENT_TYPES
from eventlog.records import MAX_READ_LIMIT

router = APIRouter(prefix="/admin/v1", tags=["admin: events"], route_class=OrjsonRoute)


@router.get("/events", response_model=EventPageOut)
async def list_events(
    actor: AdminActor,
    accounts: AccountsDep,
    after_seq: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="Return events with seq > after_seq.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_READ_LIMIT)] = 100,
    client_id: Annotated[str | None, Query(pattern=CLIENT_ID_PATTERN)] = None,
    type: Annotated[
        str | None, Query(max_length=64, description="An event type, e.g. client.created.")
    ] = None,
) -> EventPageOut:
    """A page of the event log in seq order, optionally for one client or one type."""
    if type is not None and type not in EVENT_TYPES:
        raise Invalid(f"unknown event type; known types: {', '.join(sorted(EVENT_TYPES))}")
    events = await accounts.list_events(after_seq, limit, client_id, type)
    return EventPageOut(
        events=[event_out(e) for e in events],
        next_after_seq=events[-1].seq if events else after_seq,
    )


@router.get("/audit/verify", response_model=ChainReportOut)
async def verify_audit(actor: AdminActor, verify: AuditVerifyDep) -> ChainReportOut:
    """Check the hash chain and the live audit tables against a replay of the log.

    Mismatches are ordered by seq, so the first names the first bad event. The
    same check as ``vectorpanda audit verify``; it needs no broker.
    """
    report = await verify()
    return ChainReportOut(
        ok=report.ok,
        events=report.events,
        head_hash=report.head_hash,
        mismatches=[MismatchOut(seq=m.seq, reason=m.reason) for m in report.mismatches],
    )
