"""Admin plane: a client as of any moment, and who changed what (issue 17).

Thin: parse the times, ask the coordinator's history read service, shape the answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api.deps import AdminActor, HistoryDep
from api.errors import Invalid, NotFound
from api.routing import OrjsonRoute
from api.schemas_history import ChangesOut, ClientHistoryOut, changes_out, history_out
from coordinator.accounts.model import ClientNotFound
from coordinator.history.moments import parse_moment

router = APIRouter(prefix="/admin/v1", tags=["admin: history"], route_class=OrjsonRoute)

ClientIdPath = Annotated[str, Path(max_length=64, description="The client's id, e.g. c3f2a9...")]
_MOMENT = "An RFC 3339 time with Z or an offset, e.g. 2026-03-03T12:00:00Z."
FieldName = Literal["name", "email", "tier", "status", "keys", "collections", "billing"]


def _moment(name: str, text: str) -> datetime:
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise Invalid(f"{name}: {exc}") from None


def _optional_moment(name: str, text: str | None) -> datetime | None:
    return None if text is None else _moment(name, text)


@router.get("/clients/{client_id}/history", response_model=ClientHistoryOut)
async def client_history(
    client_id: ClientIdPath,
    actor: AdminActor,
    history: HistoryDep,
    at: Annotated[str, Query(max_length=64, description=_MOMENT)],
) -> ClientHistoryOut:
    """The client as of ``at``: its events up to that moment folded, with the last one's seq
    and hash so the answer can be checked against the chain. 404 before it existed."""
    moment = _moment("at", at)
    try:
        state = await history.as_of(client_id, moment)
    except ClientNotFound:
        raise NotFound("client not found at that time") from None
    return history_out(state)


@router.get("/clients/{client_id}/changes", response_model=ChangesOut)
async def client_changes(
    client_id: ClientIdPath,
    actor: AdminActor,
    history: HistoryDep,
    since: Annotated[
        str | None, Query(max_length=64, description=f"{_MOMENT} Default: the beginning.")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description=f"{_MOMENT} Default: the end of the log.")
    ] = None,
    field: Annotated[FieldName | None, Query(description="Only changes of this field.")] = None,
) -> ChangesOut:
    """Who changed which field of the client, when, and the reason they gave, oldest first."""
    start, end = _optional_moment("since", since), _optional_moment("until", until)
    if start is not None and end is not None and start > end:
        raise Invalid("since is after until")
    try:
        changes = await history.changes(client_id, start, end, field)
    except ClientNotFound:
        raise NotFound("client not found") from None
    return changes_out(changes)
