"""Everything a route or page uses, as ``Annotated`` dependencies.

The composition root (``vectorpanda.server``) builds the coordinator's parts and
hands them to ``create_app(...)`` (``api/services.py``). Routes and pages declare
what they need (``pause: PauseDep``) and never reach into the app themselves.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.admission import ADDRESS_REFUSED
from api.client_address import client_address
from api.dashboard.context import Dashboard
from api.errors import Forbidden, Invalid, Paused, RateLimited, Unauthorized, Unavailable
from api.services import AuditVerify, services_of
from coordinator.accounts import Accounts
from coordinator.accounts.key_policy import address_allowed
from coordinator.accounts.model import Principal
from coordinator.backups import BackupService
from coordinator.census import CensusTaker
from coordinator.data_keys import DataKeys
from coordinator.dataplane import DataPlane
from coordinator.history.service import ClientHistory
from coordinator.hub import WorkerHub
from coordinator.metrics import Metrics
from coordinator.pause import PauseService, TenantFiles
from coordinator.rate_limit import RateLimiter, over_rate_message
from coordinator.tiers import TierLimits, limits_for
from eventlog.events import ClientStatus, Scope

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
    services = services_of(request)
    expected = services.admin_token
    if token is None:
        raise Unauthorized()
    presented = token.encode()
    # Both compares always run, so timing says nothing about which token was close.
    is_admin = hmac.compare_digest(presented, expected)
    scheduler = services.scheduler_token
    is_scheduler = scheduler is not None and hmac.compare_digest(presented, scheduler)
    if is_admin:
        return "admin"
    if is_scheduler:
        return "scheduler"
    operator = await services.accounts.operator_actor(token)
    if operator is None:
        raise Unauthorized()
    return operator


async def get_accounts(request: Request) -> Accounts:
    return services_of(request).accounts


async def get_history(request: Request) -> ClientHistory:
    return services_of(request).history


async def get_dataplane(request: Request) -> DataPlane:
    return services_of(request).dataplane


async def get_hub(request: Request) -> WorkerHub:
    return services_of(request).hub


async def get_metrics(request: Request) -> Metrics:
    return services_of(request).metrics


async def get_backups(request: Request) -> BackupService:
    service = services_of(request).backups
    if service is None:
        raise Unavailable("backups are not configured in this process")
    return service


async def get_pause(request: Request) -> PauseService:
    service = services_of(request).pause
    if service is None:
        raise Unavailable("pausing is not configured in this process")
    return service


async def get_optional_pause(request: Request) -> PauseService | None:
    """The pause service where one runs; callers fall back to the bare command."""
    return services_of(request).pause


async def get_census(request: Request) -> CensusTaker:
    taker = services_of(request).census
    if taker is None:
        raise Unavailable("the census is not configured in this process")
    return taker


async def get_data_keys(request: Request) -> DataKeys | None:
    """Clients' data keys; None where encryption at rest is off."""
    return services_of(request).data_keys


async def get_tenant_files(request: Request) -> TenantFiles | None:
    return services_of(request).tenant_files


async def get_audit_verify(request: Request) -> AuditVerify:
    """The configured audit check; without audit tables (unit tests), the chain alone."""
    services = services_of(request)
    return services.audit_verify or services.accounts.verify_chain


async def get_rotations(request: Request) -> set[asyncio.Task[Any]]:
    return services_of(request).rotations


async def get_dashboard(request: Request) -> Dashboard | None:
    """The dashboard's parts; None where it is not configured (pages say so)."""
    return services_of(request).dashboard


def get_rate_limiter(request: Request) -> RateLimiter | None:
    """The app's rate limiter; None when the composition root turned limiting off."""
    return services_of(request).rate_limiter


def check_rate(request: Request, principal: Principal) -> None:
    """Take one token from the client's bucket, sized by its current tier."""
    limiter = get_rate_limiter(request)
    if limiter is None:
        return
    tier = limits_for(principal.tier)
    decision = limiter.acquire(principal.client_id, tier.requests_per_second, tier.burst)
    if not decision.allowed:
        raise RateLimited(
            over_rate_message(
                principal.tier, tier.requests_per_second, tier.burst, decision.retry_after
            ),
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
    services = services_of(request)
    principal = await services.accounts.authenticate(token)
    if principal is None:
        raise Unauthorized()
    request.state.client_id = principal.client_id
    if principal.networks:
        trusted = services.trusted_proxies
        if not address_allowed(principal.networks, client_address(request.scope, trusted)):
            raise Forbidden(ADDRESS_REFUSED)
    if principal.status == ClientStatus.PAUSED:
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


def scoped(scope: Scope) -> object:
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
HubDep = Annotated[WorkerHub, Depends(get_hub)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
PauseDep = Annotated[PauseService, Depends(get_pause)]
OptionalPauseDep = Annotated[PauseService | None, Depends(get_optional_pause)]
CensusDep = Annotated[CensusTaker, Depends(get_census)]
DataKeysDep = Annotated[DataKeys | None, Depends(get_data_keys)]
TenantFilesDep = Annotated[TenantFiles | None, Depends(get_tenant_files)]
AuditVerifyDep = Annotated[AuditVerify, Depends(get_audit_verify)]
RotationsDep = Annotated[set[asyncio.Task[Any]], Depends(get_rotations)]
DashboardDep = Annotated[Dashboard | None, Depends(get_dashboard)]
ReadKey = Annotated[Principal, scoped(Scope.READ)]
WriteKey = Annotated[Principal, scoped(Scope.WRITE)]
ManageKey = Annotated[Principal, scoped(Scope.MANAGE)]
