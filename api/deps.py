"""Shared FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.admission import ADDRESS_REFUSED
from api.client_address import client_address
from api.errors import Forbidden, Invalid, Paused, RateLimited, Unauthorized, Unavailable
from coordinator.accounts import Accounts
from coordinator.accounts.key_policy import address_allowed
from coordinator.accounts.model import Principal
from coordinator.backups import BackupService
from coordinator.dataplane import DataPlane
from coordinator.history.service import ClientHistory
from coordinator.rate_limit import RateLimiter
from coordinator.tiers import TierLimits, limits_for

BEARER = "bearer "


def bearer_token(request: Request) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, if any."""
    header = request.headers.get("authorization")
    if not header or len(header) > 1024 or header[:7].lower() != BEARER:
        return None
    token = header[7:].strip()
    return token or None


async def require_admin(request: Request) -> str:
    """Admin plane: the bootstrap token (actor ``admin``), the scheduler's, or an operator's.

    Returns the actor the event log records: ``admin``, ``scheduler`` or ``operator:<name>``.
    """
    token = bearer_token(request)
    expected: bytes = request.app.state.admin_token
    if token is None:
        raise Unauthorized()
    presented = token.encode()
    # Both compares always run, so timing says nothing about which token was close.
    is_admin = hmac.compare_digest(presented, expected)
    scheduler: bytes | None = getattr(request.app.state, "scheduler_token", None)
    is_scheduler = scheduler is not None and hmac.compare_digest(presented, scheduler)
    if is_admin:
        return "admin"
    if is_scheduler:
        return "scheduler"
    accounts: Accounts = request.app.state.accounts
    operator = await accounts.operator_actor(token)
    if operator is None:
        raise Unauthorized()
    return operator


async def get_accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


async def get_history(request: Request) -> ClientHistory:
    history: ClientHistory = request.app.state.history
    return history


async def get_dataplane(request: Request) -> DataPlane:
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def get_backups(request: Request) -> BackupService:
    service: BackupService | None = getattr(request.app.state, "backups", None)
    if service is None:
        raise Unavailable("backups are not configured in this process")
    return service


def get_rate_limiter(request: Request) -> RateLimiter | None:
    """The app's rate limiter; None when the composition root turned limiting off."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    return limiter


def check_rate(request: Request, principal: Principal) -> None:
    """Take one token from the client's bucket, sized by its current tier."""
    limiter = get_rate_limiter(request)
    if limiter is None:
        return
    tier = limits_for(principal.tier)
    decision = limiter.acquire(principal.client_id, tier.requests_per_second, tier.burst)
    if not decision.allowed:
        raise RateLimited(
            f"Over the {principal.tier} tier's rate of {tier.requests_per_second:g} requests/s "
            f"(burst {tier.burst}); retry after {decision.retry_after} s.",
            retry_after=decision.retry_after,
        )


async def require_key(request: Request) -> Principal:
    """Data plane: resolve the API key through the key cache, then apply the rate limit.

    The admission gate (api/admission.py) has normally done both already and
    left the principal in the request state.
    """
    admitted: Principal | None = getattr(request.state, "principal", None)
    if admitted is not None:
        return admitted
    token = bearer_token(request)
    if token is None:
        raise Unauthorized()
    accounts: Accounts = request.app.state.accounts
    principal = await accounts.authenticate(token)
    if principal is None:
        raise Unauthorized()
    request.state.client_id = principal.client_id
    if principal.networks:
        trusted = getattr(request.app.state, "trusted_proxies", ())
        if not address_allowed(principal.networks, client_address(request.scope, trusted)):
            raise Forbidden(ADDRESS_REFUSED)
    if principal.status == "paused":
        raise Paused()
    check_rate(request, principal)
    return principal


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameters a route declares (its own and its dependencies'), kept on it."""
    names: frozenset[str] | None = getattr(route, "_vp_declared_query", None)
    if names is None:
        names = frozenset(_query_names(route.dependant))
        setattr(route, "_vp_declared_query", names)  # noqa: B010 (not a declared attribute)
    return names


async def reject_unknown_query(request: Request) -> None:
    """An unknown query parameter is a 422 naming it: a filter silently ignored misleads."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = declared_query(route)
    unknown = sorted({name for name in request.query_params if name not in allowed})
    if unknown:
        named = ", ".join(repr(name[:64]) for name in unknown[:5])
        takes = ", ".join(sorted(allowed)) or "none"
        raise Invalid(f"unknown query parameter {named}; this route takes: {takes}")


StrictQuery = Depends(reject_unknown_query)


def tier_limits(principal: Principal) -> TierLimits:
    """The limits of the principal's tier as it stands now (the key cache follows changes)."""
    return limits_for(principal.tier)


def scoped(scope: str) -> object:
    """A dependency that requires a valid key carrying ``scope``."""

    async def check(request: Request) -> Principal:
        # Calls require_key itself: one dependency for FastAPI to solve per request, not two.
        principal = await require_key(request)
        if scope not in principal.scopes:
            raise Forbidden(f"This key lacks the '{scope}' scope.")
        return principal

    return Depends(check)


AdminActor = Annotated[str, Depends(require_admin)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
HistoryDep = Annotated[ClientHistory, Depends(get_history)]
BackupsDep = Annotated[BackupService, Depends(get_backups)]
ReadKey = Annotated[Principal, scoped("read")]
WriteKey = Annotated[Principal, scoped("write")]
ManageKey = Annotated[Principal, scoped("manage")]
