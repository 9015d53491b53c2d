"""Login, OAuth callback and logout: the only dashboard routes reachable signed out."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.dashboard.context import (
    Dashboard,
    clear_session_cookie,
    cookie_hash,
    csrf_ok,
    load_session,
    message,
    page,
    redirect,
    set_session_cookie,
)
from api.dashboard.oauth import LoginRefused
from api.deps import AccountsDep, DashboardDep
from coordinator.accounts import Accounts
from coordinator.sessions.model import (
    Role,
    SessionKind,
    expiry_reason,
    new_login_session,
    new_session_id,
    new_user_session,
    same_secret,
)

router = APIRouter(include_in_schema=False)
log = logging.getLogger("vectorpanda.dashboard")

NOT_CONFIGURED = "The dashboard is not configured on this server."
START_AGAIN = (
    "This sign-in attempt is not valid for this browser or has expired. Please start again."
)


@router.get("/login")
async def login_page(request: Request, dash: DashboardDep) -> Response:
    if dash is None:
        return message(request, "Dashboard unavailable", NOT_CONFIGURED, 404)
    if await load_session(dash, request) is not None:
        return redirect("/dashboard")
    notice = dash.foreign_host(request)
    if notice is not None:
        pass  # wrong host: that is what the user needs to know first
    elif request.query_params.get("expired"):
        notice = "Your session expired. Please sign in again."
    elif request.query_params.get("bye"):
        notice = "You are signed out."
    providers = [(p.name, p.label) for p in dash.providers.values()]
    return page(request, "login.html", providers=providers, notice=notice, session=None)


@router.get("/login/{provider}")
async def login_start(provider: str, request: Request, dash: DashboardDep) -> Response:
    if dash is None:
        return message(request, "Dashboard unavailable", NOT_CONFIGURED, 404)
    chosen = dash.providers.get(provider)
    if chosen is None:
        return message(request, "Unknown sign-in provider", "Choose one on the login page.", 404)
    wrong_host = dash.foreign_host(request)
    if wrong_host is not None:
        return message(request, "Sign in at the service's own address", wrong_host, 400)
    if await load_session(dash, request) is not None:
        return redirect("/dashboard")  # signed in already: log out first to switch accounts
    old = cookie_hash(request)
    if old is not None:  # an abandoned login attempt of this browser
        await asyncio.to_thread(dash.sessions.delete, old)
    # Sweep rows that can no longer be valid (abandoned logins, idle sessions).
    stale = max(dash.policy.idle_s, dash.policy.login_timeout_s)
    await asyncio.to_thread(dash.sessions.purge, time.time() - stale)
    session_id = new_session_id()
    pending = new_login_session(session_id, provider, time.time())
    assert pending.state and pending.code_verifier and pending.nonce
    try:
        url = await chosen.authorization_url(
            dash.redirect_uri(provider), pending.state, pending.code_verifier, pending.nonce
        )
    except Exception:
        log.exception("could not reach the %s sign-in provider", provider)
        return message(request, "Sign-in unavailable", "The provider could not be reached.", 502)
    await asyncio.to_thread(dash.sessions.add, pending)
    response = redirect(url)
    set_session_cookie(response, session_id, dash.policy.login_timeout_s)
    return response


@router.get("/login/{provider}/callback")
async def login_callback(
    provider: str, request: Request, dash: DashboardDep, accounts: AccountsDep
) -> Response:
    if dash is None or provider not in dash.providers:
        return message(request, "Dashboard unavailable", NOT_CONFIGURED, 404)
    id_hash = cookie_hash(request)
    found = await asyncio.to_thread(dash.sessions.get, id_hash) if id_hash else None
    pending = None
    if id_hash and found is not None and found.kind is SessionKind.LOGIN:
        # Taken, not read: whatever happens next, this state cannot be used again.
        pending = await asyncio.to_thread(dash.sessions.take, id_hash)
    params = request.query_params
    if (
        pending is None
        or pending.kind is not SessionKind.LOGIN
        or pending.provider != provider
        or expiry_reason(pending, dash.policy, time.time()) is not None
        or not same_secret(params.get("state"), pending.state)
    ):
        response = message(request, "Sign-in refused", START_AGAIN, 400)
        if pending is not None:  # a signed-in browser keeps its session on a stray link
            clear_session_cookie(response)
        return response
    if params.get("error") or not params.get("code"):
        return _refused(request, "Sign-in cancelled", "The provider did not sign you in.", 400)
    assert pending.code_verifier and pending.nonce
    try:
        email = await dash.providers[provider].verified_email(
            params["code"], dash.redirect_uri(provider), pending.code_verifier, pending.nonce
        )
    except LoginRefused as exc:
        return _refused(request, "Sign-in refused", str(exc), 400)
    return await _sign_in(dash, accounts, request, email, provider)


async def _sign_in(
    dash: Dashboard, accounts: Accounts, request: Request, email: str, provider: str
) -> Response:
    email = email.strip().lower()
    client_id = None
    if email in dash.operator_emails:
        role = Role.OPERATOR
    else:
        role = Role.CLIENT
        client_id = await accounts.client_for_login_email(email)
        if client_id is None:
            log.info("dashboard login refused: no client for a %s login", provider)
            text = (
                f"No VectorPanda account uses {email}. Nothing was created. If you are a client, "
                "ask your VectorPanda contact to link this email to your account."
            )
            return _refused(request, "No account for this email", text, 403)
    session_id = new_session_id()
    session = new_user_session(session_id, email, role, client_id, provider, time.time())
    await asyncio.to_thread(dash.sessions.add, session)
    log.info("dashboard login: %s as %s via %s", role.value, client_id or "operator", provider)
    response = redirect("/dashboard")
    set_session_cookie(response, session_id, dash.policy.absolute_s)
    return response


def _refused(request: Request, title: str, text: str, status: int) -> Response:
    """A refusal after this browser's login attempt was used up: its cookie goes too."""
    response = message(request, title, text, status)
    clear_session_cookie(response)
    return response


@router.post("/logout")
async def logout(request: Request, dash: DashboardDep) -> Response:
    if dash is None:
        return message(request, "Dashboard unavailable", NOT_CONFIGURED, 404)
    session = await load_session(dash, request)
    if session is None:
        response = redirect("/login")
        clear_session_cookie(response)
        return response
    if not await csrf_ok(request, session):
        return message(request, "Form expired", "Reload the page and try again.", 403)
    await asyncio.to_thread(dash.sessions.delete, session.id_hash)
    response = redirect("/login?bye=1")
    clear_session_cookie(response)
    return response
