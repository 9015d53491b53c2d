"""The dashboard's sign-in guard, as the one dependency every page takes.

``SignedIn`` resolves to the dashboard and the caller's live session; without
one it answers the request itself (the login redirect, or a page saying the
dashboard is not configured here). ``OperatorSignedIn`` also requires an operator.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.dashboard.context import (
    Dashboard,
    clear_session_cookie,
    is_operator,
    load_session,
    message,
    redirect,
)
from api.deps import DashboardDep
from api.errors import AnswerInstead
from coordinator.sessions.model import Session


async def signed_in(dash: DashboardDep, request: Request) -> tuple[Dashboard, Session]:
    """The dashboard and the caller's live session; otherwise answers with the way to log in."""
    if dash is None:
        raise AnswerInstead(message(request, "Dashboard unavailable", "Not configured here.", 404))
    session = await load_session(dash, request)
    if session is None:
        expired = getattr(request.state, "session_expired", False)
        response = redirect("/login?expired=1" if expired else "/login")
        clear_session_cookie(response)
        raise AnswerInstead(response)
    return dash, session


SignedIn = Annotated[tuple[Dashboard, Session], Depends(signed_in)]


async def signed_in_operator(found: SignedIn, request: Request) -> tuple[Dashboard, Session]:
    """As ``signed_in``, for an operator only (a 403 page otherwise)."""
    if not is_operator(found[1]):
        raise AnswerInstead(
            message(request, "Not allowed", "This page is for VectorPanda operators.", 403)
        )
    return found


OperatorSignedIn = Annotated[tuple[Dashboard, Session], Depends(signed_in_operator)]
