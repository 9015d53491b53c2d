"""Shared FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from api.errors import Forbidden, Paused, Unauthorized
from coordinator.accounts import Accounts
from coordinator.accounts.model import Principal
from coordinator.dataplane import DataPlane

BEARER = "bearer "


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, if any."""
    header = request.headers.get("authorization")
    if not header or len(header) > 1024 or header[:7].lower() != BEARER:
        return None
    token = header[7:].strip()
    return token or None


async def require_admin(request: Request) -> str:
    """Admin plane: constant-time compare against the admin token; returns the actor."""
    token = bearer_token(request)
    expected: bytes = request.app.state.admin_token
    if token is None or not hmac.compare_digest(token.encode(), expected):
        raise Unauthorized()
    return "admin"


def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


def get_dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def require_key(request: Request) -> Principal:
    """Data plane: resolve the API key through the key cache."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized()
    principal = await get_accounts(request).authenticate(token)
    if principal is None:
        raise Unauthorized()
    request.state.client_id = principal.client_id
    if principal.status == "paused":
        raise Paused()
    return principal


def scoped(scope: str) -> object:
    """A dependency that requires a valid key carrying ``scope``."""

    async def check(principal: Annotated[Principal, Depends(require_key)]) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"This key lacks the '{scope}' scope.")
        return principal

    return Depends(check)


AdminActor = Annotated[str, Depends(require_admin)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
ReadKey = Annotated[Principal, scoped("read")]
WriteKey = Annotated[Principal, scoped("write")]
ManageKey = Annotated[Principal, scoped("manage")]
