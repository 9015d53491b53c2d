"""Admin plane: the event log and its hash-chain audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AccountsDep, AdminActor
from api.errors import Invalid
from api.schemas_admin import CLIENT_ID_PATTERN, ChainReportOut, EventOut, EventPageOut, MismatchOut
from eventlog.events import EVENT_TYPES
from eventlog.store import MAX_READ_LIMIT

router = APIRouter(prefix="/admin/v1", tags=["admin: events"])


@router.get("/events", response_model=EventPageOut)
async def list_events(
    actor: AdminActor,
    accounts: AccountsDep,
    after_seq: Annotated[int, Query(ge=0, description="Return events with seq > after_seq.")] = 0,
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
        events=[
            EventOut(
                seq=e.seq,
                event_id=e.event_id,
                type=e.type,
                schema_version=e.schema_version,
                occurred_at=e.occurred_at,
                actor=e.actor,
                client_id=e.client_id,
                data=e.data,
                prev_hash=e.prev_hash,
                hash=e.hash,
            )
            for e in events
        ],
        next_after_seq=events[-1].seq if events else after_seq,
    )


@router.get("/audit/verify", response_model=ChainReportOut)
async def verify_chain(actor: AdminActor, accounts: AccountsDep) -> ChainReportOut:
    """Walk the hash chain from genesis; mismatches name the first broken seqs."""
    report = await accounts.verify_chain()
    return ChainReportOut(
        ok=report.ok,
        events=report.events,
        head_hash=report.head_hash,
        mismatches=[MismatchOut(seq=m.seq, reason=m.reason) for m in report.mismatches],
    )
