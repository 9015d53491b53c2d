"""The data plane's front door: a cheap "no" and a fair share of the coordinator per client.

A request that will be refused (no or malformed credential, unknown, revoked or
expired key, a key used from outside its ``allowed_cidrs``, paused client, over
the tier's rate, too many of the client's requests already in the coordinator)
is answered here, before its body is read or
parsed and before routing, dependency solving or any per-route work. A flood
of such requests then costs the coordinator tens of microseconds each instead
of a whole request, so it cannot take the event loop from other clients.

A credential that keeps being refused (the same unknown key, or a client over
its rate) is answered after a pause (``refusal_delay_s``) once it has had
``REFUSALS_PER_S`` refusals a second (burst ``REFUSAL_BURST``) answered at
once. Holding an answer costs nothing, and a flooding client waits for each
answer before it sends again on that connection, so 64 connections at full
speed become 64 requests per pause instead of tens of thousands a second that
the coordinator would have to parse. A client that makes a mistake now and
then is told at once.

The gate is the outermost ASGI callable for data-plane paths (``ServicesApp.front``):
a refusal touches nothing else, not Starlette's middleware stack nor the request
context (``api/middleware.py``). It does that context's part itself: the request id
(an incoming well-formed ``X-Request-Id`` is kept), the declared body size (413
before anything else), one request-log line and the request's metrics
(``api/refusals.py``). Requests that pass carry their principal, request id and start
time in the ASGI scope's state, so the route's key dependency neither authenticates
nor takes a rate token again, and the request context keeps the same id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.client_address import client_address
from api.middleware import (
    RequestObserver,
    new_request_id,
    report_defect,
    too_large_message,
    well_formed_request_id,
)
from api.refusals import Refusal, RefusalDesk
from coordinator.accounts.key_policy import IPNetwork, address_allowed
from coordinator.accounts.model import Principal
from coordinator.admission import ClientAdmission
from coordinator.rate_limit import RateLimiter, over_rate_message
from coordinator.tiers import limits_for
from eventlog.events import ClientStatus

DATA_PLANE_PREFIX = "/v1/"
_BEARER = b"bearer "
_MAX_AUTHORIZATION = 1024
REFUSALS_PER_S = 5
REFUSAL_BURST = 20
_MAX_RATE_REFUSALS = 1024  # cached over-the-rate answers (tier x retry-after: a handful)

Authenticate = Callable[[str], Awaitable[Principal | None]]

UNAUTHORIZED = "Missing, malformed, unknown or revoked credential."
# Sent only after the key's secret was proven: it tells nothing to someone without it.
ADDRESS_REFUSED = "This key may not be used from this address (the key's allowed_cidrs)."
PAUSED = (
    "This account is paused. Ask the operators to resume it "
    "(admin: POST /admin/v1/clients/{id}/resume)."
)


def _bearer(value: bytes) -> str | None:
    if len(value) > _MAX_AUTHORIZATION or value[:7].lower() != _BEARER:
        return None
    token = value[7:].strip()
    try:
        return token.decode("ascii") or None
    except UnicodeDecodeError:
        return None


def bearer_of(scope: Scope) -> str | None:
    """The credential of the request's ``Authorization: Bearer ...`` header, if well formed."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return _bearer(value)
    return None


class AdmissionGate:
    """The data plane's front ASGI callable (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate,
        rate_limiter: RateLimiter | None,
        admission: ClientAdmission,
        refusal_delay_s: float = 0.0,
        trusted_proxies: tuple[IPNetwork, ...] = (),
        max_body_bytes: int | None = None,
        refused_counts: dict[tuple[str, int], int] | None = None,
        usage: RequestObserver | None = None,
        on_defect: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.refusal_delay_s = refusal_delay_s
        self.authenticate = authenticate
        self.rate_limiter = rate_limiter
        self.admission = admission
        self.max_body_bytes = max_body_bytes
        self.on_defect = on_defect
        self.desk = RefusalDesk(refused_counts, usage)
        # Refusals answered at once, per credential; past them, answers are held.
        self._refusals = RateLimiter(max_clients=10_000)
        self._unauthorized = Refusal(401, "unauthorized", UNAUTHORIZED)
        self._forbidden = Refusal(403, "forbidden", ADDRESS_REFUSED)
        self._paused = Refusal(423, "paused", PAUSED)
        self._internal = Refusal(500, "internal", "Internal error.")
        self._too_large = Refusal(413, "payload_too_large", too_large_message(max_body_bytes))
        self._busy = Refusal(
            429,
            "rate_limited",
            f"Too many of this client's requests are in progress "
            f"(at most {admission.max_running} running and "
            f"{admission.max_waiting} waiting); retry after 1 s.",
            1,
        )
        self._over_rate: dict[tuple[str, float, int, int], Refusal] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(DATA_PLANE_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        request_id: str | None = state.get("request_id")
        token: str | None = None
        authorization = declared = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"x-request-id":
                if request_id is None:
                    request_id = well_formed_request_id(value)
            elif name == b"content-length" and declared is None:
                declared = value
        if request_id is None:
            request_id = new_request_id()
        state["request_id"] = request_id
        state["started"] = started
        if declared is not None and self.max_body_bytes is not None:
            try:
                over = int(declared) > self.max_body_bytes
            except ValueError:
                over = False
            if over:
                await self.desk.send(scope, send, self._too_large, request_id, started, None)
                return
        if authorization is not None:
            token = _bearer(authorization)
        try:
            principal = None if token is None else await self.authenticate(token)
        except Exception:
            report_defect(scope, request_id, self.on_defect)
            await self.desk.send(scope, send, self._internal, request_id, started, None)
            return
        if principal is None:
            # Keyed by the presented key's id: behind nginx every caller shares one address,
            # and requests without a well-formed key are limited per address at the edge.
            if token is not None and token.startswith("vp_"):
                await self._hold("key:" + token[3:19])
            await self.desk.send(scope, send, self._unauthorized, request_id, started, None)
            return
        client_id = principal.client_id
        state["client_id"] = client_id
        refusal = self._refusal(scope, principal)
        if refusal is None and not await self.admission.enter(client_id):
            refusal = self._busy
        if refusal is not None:
            if refusal is not self._paused:
                await self._hold(client_id)
            await self.desk.send(scope, send, refusal, request_id, started, client_id)
            return
        state["principal"] = principal
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(client_id)

    def _refusal(self, scope: Scope, principal: Principal) -> Refusal | None:
        """Why an authenticated request is refused (address, pause, rate), or None."""
        if principal.networks and not address_allowed(
            principal.networks, client_address(scope, self.trusted_proxies)
        ):
            return self._forbidden
        if principal.status == ClientStatus.PAUSED:
            return self._paused
        if self.rate_limiter is None:
            return None
        tier = limits_for(principal.tier)
        decision = self.rate_limiter.acquire(
            principal.client_id, tier.requests_per_second, tier.burst
        )
        if decision.allowed:
            return None
        key = (principal.tier, tier.requests_per_second, tier.burst, decision.retry_after)
        refusal = self._over_rate.get(key)
        if refusal is None:
            refusal = Refusal(
                429,
                "rate_limited",
                over_rate_message(
                    principal.tier, tier.requests_per_second, tier.burst, decision.retry_after
                ),
                decision.retry_after,
            )
            if len(self._over_rate) < _MAX_RATE_REFUSALS:
                self._over_rate[key] = refusal
        return refusal

    async def _hold(self, who: str) -> None:
        if self.refusal_delay_s <= 0:
            return
        if not self._refusals.acquire(who, REFUSALS_PER_S, REFUSAL_BURST).allowed:
            await asyncio.sleep(self.refusal_delay_s)
