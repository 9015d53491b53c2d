"""The operator view: every client, the workers, census, anomalies, the audit log, actions."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.dashboard.client_pages import ClientReads, ClientReadsDep, render_client
from api.dashboard.context import Dashboard, csrf_ok, message, page, redirect
from api.dashboard.guard import OperatorSignedIn
from api.deps import AccountsDep, DataPlaneDep, HistoryDep, HubDep
from coordinator.accounts import ChangeTier, ClientNotFound, InvalidCommand
from coordinator.accounts.commands import PauseClient, ResumeClient
from coordinator.errors import TenantUnavailable
from coordinator.history.model import ClientAsOf
from coordinator.history.moments import parse_moment, stored_time
from coordinator.history.service import ClientHistory
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from coordinator.sessions.model import Session, actor_of
from coordinator.tiers import TIERS

router = APIRouter(prefix="/dashboard/operator", include_in_schema=False)
# What a browser's datetime-local input sends (no seconds, no zone): read as UTC.
_LOCAL_MINUTES = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def workers_of(hub: WorkerHub, tenant_router: TenantRouter) -> list[dict[str, Any]]:
    rows = [
        {
            "worker_id": link.worker_id,
            "state": "live",
            "tenants": len(tenant_router.tenants_of(link.worker_id)),
            "heartbeat_age_s": round(link.heartbeat_age(), 1),
        }
        for link in hub.live()
    ]
    rows += [
        {"worker_id": gone.worker_id, "state": "down", "tenants": 0, "heartbeat_age_s": None}
        for gone in hub.departed.values()
    ]
    return sorted(rows, key=lambda r: r["worker_id"])


@router.get("")
async def overview(
    found: OperatorSignedIn,
    request: Request,
    accounts: AccountsDep,
    hub: HubDep,
    dataplane: DataPlaneDep,
) -> Response:
    dash, session = found
    since = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    clients = await accounts.list_clients()
    totals = await asyncio.to_thread(dash.audit.usage_totals, since)
    census = await asyncio.to_thread(dash.audit.census, 10)
    anomalies = await asyncio.to_thread(dash.audit.anomalies, 20)
    return page(
        request,
        "operator.html",
        session=session,
        clients=clients,
        totals=totals,
        workers=workers_of(hub, dataplane.router),
        census=census,
        anomalies=anomalies,
    )


@router.get("/audit")
async def audit_log(
    found: OperatorSignedIn, request: Request, accounts: AccountsDep, history: HistoryDep
) -> Response:
    dash, session = found
    q = request.query_params
    client_id = (q.get("client_id") or "").strip()[:64] or None
    type_ = (q.get("type") or "").strip()[:64] or None
    before = q.get("before_seq")
    before_seq = int(before) if before and before.isdigit() else None
    rows = await asyncio.to_thread(dash.audit.audit, client_id, type_, before_seq, 50)
    types = await asyncio.to_thread(dash.audit.event_types)
    clients = await accounts.list_clients()
    names = {c.client_id: c.name for c in clients}
    as_of = (q.get("as_of") or "").strip()[:64]
    state, as_of_error = await _state_as_of(history, client_id, as_of)
    return page(
        request,
        "audit.html",
        session=session,
        rows=rows,
        types=types,
        names=names,
        client_id=client_id or "",
        type=type_ or "",
        as_of=as_of,
        state=state,
        as_of_error=as_of_error,
        next_before=rows[-1].seq if len(rows) == 50 else None,
    )


async def _state_as_of(
    history: ClientHistory, client_id: str | None, as_of: str
) -> tuple[ClientAsOf | None, str | None]:
    """The client as of the "as of" field (a UTC date-time input, or RFC 3339), or why not."""
    if not as_of:
        return None, None
    if client_id is None:
        return None, "Give a client id to see its state as of a moment."
    try:
        at = parse_moment(as_of + (":00Z" if _LOCAL_MINUTES.fullmatch(as_of) else "Z"))
    except ValueError:
        try:
            at = parse_moment(as_of)
        except ValueError as exc:
            return None, str(exc)
    try:
        return await history.as_of(client_id, at), None
    except ClientNotFound:
        return None, f"No client {client_id} existed at {stored_time(at)}."


@router.get("/clients/{client_id}")
async def client_detail(
    client_id: str, found: OperatorSignedIn, request: Request, reads: ClientReadsDep
) -> Response:
    dash, session = found
    notice = request.query_params.get("done")
    return await render_client(
        dash, reads, request, session, client_id, operating=True, tiers=list(TIERS), notice=notice
    )


async def _act(
    request: Request,
    found: tuple[Dashboard, Session],
    reads: ClientReads,
    client_id: str,
    run: Any,
) -> Response:
    """Check the CSRF token, then run ``run(form, actor)`` (a command) as the operator."""
    dash, session = found
    if not await csrf_ok(request, session):
        return message(request, "Form expired", "Reload the page and try again.", 403)
    form = await request.form()
    try:
        await run(form, actor_of(session))
    except ClientNotFound:
        return message(request, "No such client", "That client does not exist.", 404)
    except TenantUnavailable as exc:
        return message(request, "Try again shortly", exc.message, 503)
    except InvalidCommand as exc:
        return await render_client(
            dash,
            reads,
            request,
            session,
            client_id,
            operating=True,
            tiers=list(TIERS),
            error=str(exc),
            status_code=422,
        )
    return redirect(f"/dashboard/operator/clients/{client_id}?done={int(time.time())}")


@router.post("/clients/{client_id}/tier")
async def change_tier(
    client_id: str, found: OperatorSignedIn, request: Request, reads: ClientReadsDep
) -> Response:
    async def run(form: Any, actor: str) -> None:
        tier = str(form.get("tier", ""))
        reason = str(form.get("reason") or "").strip()[:500]
        if not reason:
            raise InvalidCommand("give a reason for the tier change")
        await reads.accounts.handle(ChangeTier(client_id, tier, actor=actor, reason=reason))

    return await _act(request, found, reads, client_id, run)


@router.post("/clients/{client_id}/pause")
async def pause(
    client_id: str, found: OperatorSignedIn, request: Request, reads: ClientReadsDep
) -> Response:
    async def run(form: Any, actor: str) -> None:
        reason = str(form.get("reason") or "").strip()
        if not reason:
            raise InvalidCommand("give a reason for pausing")
        # Pause and resume also move the client's files; the admin API uses the same service.
        if reads.pause is not None:
            await reads.pause.pause(client_id, reason, actor)
        else:
            await reads.accounts.handle(PauseClient(client_id, reason, actor=actor))

    return await _act(request, found, reads, client_id, run)


@router.post("/clients/{client_id}/resume")
async def resume(
    client_id: str, found: OperatorSignedIn, request: Request, reads: ClientReadsDep
) -> Response:
    async def run(form: Any, actor: str) -> None:
        reason = str(form.get("reason") or "").strip()[:500]
        if not reason:
            raise InvalidCommand("give a reason for resuming")
        if reads.pause is not None:
            await reads.pause.resume(client_id, actor, reason)
        else:
            await reads.accounts.handle(ResumeClient(client_id, actor=actor, reason=reason))

    return await _act(request, found, reads, client_id, run)
