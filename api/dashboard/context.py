"""What the dashboard routes share: its configuration, templates, sessions and CSRF checks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.dashboard.oauth import LoginProvider
from coordinator.sessions.model import (
    COOKIE_NAME,
    Role,
    Session,
    SessionKind,
    SessionPolicy,
    expiry_reason,
    hash_session_id,
    same_secret,
    valid_cookie_value,
)
from coordinator.sessions.store import SessionStore
from projections.reads import AuditReads

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

TEMPLATE_DIR = Path(__file__).parent / "templates"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


@dataclass
class Dashboard:
    """Built by the composition root and passed to ``create_app`` (``DashboardDep``)."""

    public_url: str
    sessions: SessionStore
    audit: AuditReads
    providers: dict[str, LoginProvider] = field(default_factory=dict)
    operator_emails: frozenset[str] = frozenset()
    policy: SessionPolicy = field(default_factory=SessionPolicy)

    def foreign_host(self, request: Request) -> str | None:
        """Why signing in cannot work at the host this request came to, or None if it can.

        The provider sends the browser back to the public URL; a login started on
        another name for the server (localhost vs 127.0.0.1) loses its cookie there.
        """
        expected = (urlsplit(self.public_url).hostname or "").lower()
        came_to = (request.url.hostname or "").lower()
        if not expected or came_to == expected:
            return None
        return (
            f"This page was opened at {came_to}, but sign-in works only at "
            f"{self.public_url.rstrip('/')} (VP_PUBLIC_URL): the browser would lose its "
            f"sign-in cookie on the way back from the provider. "
            f"Open {self.public_url.rstrip('/')}/login instead."
        )

    def redirect_uri(self, provider: str) -> str:
        """Exact and fixed: from the configured public URL, never from the Host header."""
        return f"{self.public_url.rstrip('/')}/login/{provider}/callback"

    def close(self) -> None:
        self.sessions.close()
        self.audit.close()


@cache
def templates() -> Jinja2Templates:
    """The pages' templates, made on the first page served: Jinja2 is about 2 MiB of the
    coordinator's memory that it need not hold while nobody opens the dashboard."""
    from fastapi.templating import Jinja2Templates

    return Jinja2Templates(directory=str(TEMPLATE_DIR))


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    response = templates().TemplateResponse(request, template, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def message(request: Request, title: str, text: str, status_code: int) -> HTMLResponse:
    """A plain page that explains what happened and where to go next."""
    return page(request, "message.html", status_code, title=title, text=text, session=None)


def redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def set_session_cookie(response: Response, session_id: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE_NAME,
        session_id,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", secure=True, httponly=True, samesite="lax")


def cookie_hash(request: Request) -> str | None:
    value = request.cookies.get(COOKIE_NAME)
    return hash_session_id(value) if value and valid_cookie_value(value) else None


async def load_session(
    dash: Dashboard, request: Request, kind: SessionKind = SessionKind.USER
) -> Session | None:
    """The live session of this kind named by the cookie; expired ones are deleted."""
    id_hash = cookie_hash(request)
    if id_hash is None:
        return None
    found = await asyncio.to_thread(dash.sessions.get, id_hash)
    if found is None or found.kind is not kind:
        return None
    now = time.time()
    if expiry_reason(found, dash.policy, now) is not None:
        await asyncio.to_thread(dash.sessions.delete, id_hash)
        request.state.session_expired = True
        return None
    if kind is SessionKind.USER:
        await asyncio.to_thread(dash.sessions.touch, id_hash, now)
    return found


async def csrf_ok(request: Request, session: Session) -> bool:
    """The form's ``csrf_token`` field matches the session's token."""
    form = await request.form()
    presented = form.get("csrf_token")
    return same_secret(presented if isinstance(presented, str) else None, session.csrf_token)


def is_operator(session: Session) -> bool:
    return session.role is Role.OPERATOR
