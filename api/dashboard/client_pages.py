"""The client view: collections, usage charts, API keys and the client's own audit trail."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.dashboard.charts import bar_chart, last_days
from api.dashboard.context import (
    Dashboard,
    csrf_ok,
    is_operator,
    message,
    page,
    redirect,
)
from api.dashboard.guard import SignedIn
from api.deps import AccountsDep, DataPlaneDep, OptionalPauseDep
from coordinator.accounts import (
    Accounts,
    ApiKeyNotFound,
    ClientNotFound,
    InvalidCommand,
    IssueApiKey,
    RevokeApiKey,
)
from coordinator.dataplane import DataPlane
from coordinator.pause import PauseService
from coordinator.sessions.model import Session, actor_of
from coordinator.tiers import limits_for
from eventlog.events import ClientStatus, Scope

router = APIRouter(include_in_schema=False)
log = logging.getLogger("vectorpanda.dashboard")
SCOPES = tuple(Scope)


@dataclass(frozen=True)
class ClientReads:
    """What the client page shows and changes: the account, its live data, its cold copy."""

    accounts: Accounts
    dataplane: DataPlane
    pause: PauseService | None


async def client_reads(
    accounts: AccountsDep, dataplane: DataPlaneDep, pause: OptionalPauseDep
) -> ClientReads:
    return ClientReads(accounts, dataplane, pause)


ClientReadsDep = Annotated[ClientReads, Depends(client_reads)]


async def client_context(dash: Dashboard, reads: ClientReads, client_id: str) -> dict[str, Any]:
    """Everything the client page shows about one client; raises ClientNotFound."""
    accounts, dataplane = reads.accounts, reads.dataplane
    client = await accounts.get_client(client_id)
    keys = await accounts.list_api_keys(client_id)
    collections: list[dict[str, Any]] | None = None
    figures: dict[str, int] | None = None
    if client.status == ClientStatus.ACTIVE:
        try:
            collections = await dataplane.list_collections(client_id)
            figures = await dataplane.usage(client_id)
        except Exception as exc:  # shown as "unavailable"; the page must still render
            log.warning("dashboard: collections of %s unavailable: %s", client_id, exc)
    elif client.status == ClientStatus.PAUSED and reads.pause is not None:
        try:  # a paused client's data sits in cold storage; the pause service describes it
            stored_now = await reads.pause.storage(client_id)
            collections = list(stored_now.get("collections") or [])
            figures = {
                "collections": len(collections),
                "vectors": int(stored_now.get("vectors", 0)),
                "bytes": int(stored_now.get("bytes", 0)),
            }
        except Exception as exc:
            log.warning("dashboard: cold storage of %s not described: %s", client_id, exc)
    for info in collections or []:
        info["approx_bytes"] = int(info.get("vector_count", 0)) * int(info["dimension"]) * 4
    days = last_days(datetime.now(UTC).date())
    recorded = await asyncio.to_thread(dash.audit.usage_days, client_id, days[0])
    stored = {d.day: d.vectors_stored for d in recorded}
    if figures is not None:
        stored[days[-1]] = figures["vectors"]  # today: the live count
    charts = [
        (title, bar_chart(title, days, values))
        for title, values in (
            ("Vectors stored", stored),
            ("Queries", {d.day: d.queries for d in recorded}),
            ("Requests", {d.day: d.requests for d in recorded}),
        )
    ]
    trail = await asyncio.to_thread(dash.audit.audit, client_id, None, None, 25)
    return {
        "client": client,
        "keys": keys,
        "collections": collections,
        "figures": figures,
        "charts": charts,
        "trail": trail,
        "scopes": SCOPES,
        "limits": limits_for(client.tier),
    }


async def render_client(
    dash: Dashboard,
    reads: ClientReads,
    request: Request,
    session: Session,
    client_id: str,
    **extra: Any,
) -> Response:
    try:
        context = await client_context(dash, reads, client_id)
    except ClientNotFound:
        return message(request, "No such client", "This account no longer exists.", 404)
    return page(request, "client.html", session=session, **context, **extra)


@router.get("/dashboard")
async def home(found: SignedIn, request: Request, reads: ClientReadsDep) -> Response:
    dash, session = found
    if is_operator(session):
        return redirect("/dashboard/operator")
    assert session.client_id is not None
    return await render_client(dash, reads, request, session, session.client_id)


def _end_of_day(day: str) -> datetime | None:
    """A form's ``YYYY-MM-DD`` expiry as the end of that day, UTC; empty: the tier default."""
    if not day:
        return None
    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise InvalidCommand("expires: give a date as YYYY-MM-DD") from None
    return datetime.combine(when, time(23, 59, 59), tzinfo=UTC)


@router.post("/dashboard/keys")
async def create_key(found: SignedIn, request: Request, reads: ClientReadsDep) -> Response:
    dash, session = found
    if session.client_id is None or not await csrf_ok(request, session):
        return message(request, "Form expired", "Reload the page and try again.", 403)
    form = await request.form()
    scopes = tuple(s for s in SCOPES if form.get(f"scope_{s}") == "on")
    label = str(form.get("label") or "").strip() or None
    try:
        expires_at = _end_of_day(str(form.get("expires_on") or "").strip())
        networks = str(form.get("allowed_cidrs") or "").split(",")
        cidrs = tuple(c.strip() for c in networks if c.strip())
        cmd = IssueApiKey(
            session.client_id,
            scopes,
            label,
            actor=actor_of(session),
            expires_at=expires_at,
            allowed_cidrs=cidrs,
        )
        issued = await reads.accounts.handle(cmd)
    except InvalidCommand as exc:
        return await render_client(
            dash, reads, request, session, session.client_id, error=str(exc), status_code=422
        )
    return await render_client(dash, reads, request, session, session.client_id, new_key=issued)


@router.post("/dashboard/keys/{key_id}/revoke")
async def revoke_key(
    key_id: str, found: SignedIn, request: Request, accounts: AccountsDep
) -> Response:
    _dash, session = found
    if session.client_id is None or not await csrf_ok(request, session):
        return message(request, "Form expired", "Reload the page and try again.", 403)
    cmd = RevokeApiKey(session.client_id, key_id[:100], actor=actor_of(session))
    try:
        await accounts.handle(cmd)
    except (ApiKeyNotFound, ClientNotFound, InvalidCommand):
        return message(request, "No such key", "That key does not exist.", 404)
    return redirect("/dashboard")
