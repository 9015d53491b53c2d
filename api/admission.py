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

Requests that pass carry their principal in the ASGI scope's state, so the
route's key dependency neither authenticates nor takes a rate token again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from api.client_address import client_address
from coordinator.accounts.key_policy import IPNetwork, address_allowed
from coordinator.accounts.model import Principal
from coordinator.admission import ClientAdmission
from coordinator.rate_limit import RateLimiter
from coordinator.tiers import limits_for
from eventlog.events import ClientStatus

DATA_PLANE_PREFIX = "/v1/"
_BEARER = b"bearer "
_MAX_AUTHORIZATION = 1024
REFUSALS_PER_S = 5
REFUSAL_BURST = 20

Authenticate = Callable[[str], Awaitable[Principal | None]]

UNAUTHORIZED = "Missing, malformed, unknown or revoked credential."
# Sent only after the key's secret was proven: it tells nothing to someone without it.
ADDRESS_REFUSED = "This key may not be used from this address (the key's allowed_cidrs)."
PAUSED = (
    "This account is paused. Ask the operators to resume it "
    "(admin: POST /admin/v1/clients/{id}/resume)."
)


def bearer_of(scope: Scope) -> str | None:
    """The credential of the request's ``Authorization: Bearer ...`` header, if well formed."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            if len(value) > _MAX_AUTHORIZATION or value[:7].lower() != _BEARER:
                return None
            token = value[7:].strip()
            try:
                return token.decode("ascii") or None
            except UnicodeDecodeError:
                return None
    return None


class AdmissionGate:
    """ASGI middleware in front of the data-plane routes (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate,
        rate_limiter: RateLimiter | None,
        admission: ClientAdmission,
        refusal_delay_s: float = 0.0,
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies
        self.refusal_delay_s = refusal_delay_s
        self.authenticate = authenticate
        self.rate_limiter = rate_limiter
        self.admission = admission
        # Refusals answered at once, per credential; past them, answers are held.
        self._refusals = RateLimiter(max_clients=10_000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(DATA_PLANE_PREFIX):
            await self.app(scope, receive, send)
            return
        token = bearer_of(scope)
        principal = None if token is None else await self.authenticate(token)
        if principal is None:
            # Keyed by the presented key's id: behind nginx every caller shares one address,
            # and requests without a well-formed key are limited per address at the edge.
            if token is not None and token.startswith("vp_"):
                await self._hold("key:" + token[3:19])
            await self._refuse(scope, send, 401, "unauthorized", UNAUTHORIZED)
            return
        state = scope.setdefault("state", {})
        state["client_id"] = principal.client_id
        if principal.networks and not address_allowed(
            principal.networks, client_address(scope, self.trusted_proxies)
        ):
            await self._hold(principal.client_id)
            await self._refuse(scope, send, 403, "forbidden", ADDRESS_REFUSED)
            return
        if principal.status == ClientStatus.PAUSED:
            await self._refuse(scope, send, 423, "paused", PAUSED)
            return
        if self.rate_limiter is not None:
            tier = limits_for(principal.tier)
            decision = self.rate_limiter.acquire(
                principal.client_id, tier.requests_per_second, tier.burst
            )
            if not decision.allowed:
                message = (
                    f"Over the {principal.tier} tier's rate of {tier.requests_per_second:g} "
                    f"requests/s (burst {tier.burst}); retry after {decision.retry_after} s."
                )
                await self._hold(principal.client_id)
                await self._refuse(scope, send, 429, "rate_limited", message, decision.retry_after)
                return
        if not await self.admission.enter(principal.client_id):
            message = (
                f"Too many of this client's requests are in progress "
                f"(at most {self.admission.max_running} running and "
                f"{self.admission.max_waiting} waiting); retry after 1 s."
            )
            await self._hold(principal.client_id)
            await self._refuse(scope, send, 429, "rate_limited", message, 1)
            return
        state["principal"] = principal
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(principal.client_id)

    async def _hold(self, who: str) -> None:
        if self.refusal_delay_s <= 0:
            return
        if not self._refusals.acquire(who, REFUSALS_PER_S, REFUSAL_BURST).allowed:
            await asyncio.sleep(self.refusal_delay_s)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        code: str,
        message: str,
        retry_after: int | None = None,
    ) -> None:
        request_id = str(scope.get("state", {}).get("request_id", ""))
        body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
