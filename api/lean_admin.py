"""The lean admin path: the two bulk admin actions without FastAPI's per-request work.

``POST /admin/v1/clients/{id}/tier`` and ``POST /admin/v1/clients/{id}/billing`` are
what a billing system or a tier sweep sends by the thousand. The routes in
api/routes/admin_clients.py stay the reference (and the OpenAPI description); this
ASGI middleware, like api/lean_query.py, answers only the requests it can prove
valid with the same checks: exactly that path and method, no query string, a JSON
body, the bootstrap (or scheduler) admin token and a body the route's own pydantic
model accepts. Everything else (an operator's token, a bad body, a query string, a
missing token) goes to the reference route unchanged, its body replayed, so errors
are the route's own. The command, its domain errors and the answer are the route's:
one builder (``change_tier_answer`` / ``record_billing_answer`` in
api/routes/admin_clients.py) makes the command, maps its errors and builds the response
model for both, serialised the same way (tests/unit/accounts/test_lean_admin.py compares
the bytes).

What it skips per action: route matching over every route (the admin routes come
after the data plane's), dependency solving, the Request objects and FastAPI's
response handling: about half of the CPU an admin action cost in the coordinator.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_body, error_parts
from api.lean_query import Disconnected, read_body, replay_body
from api.routes.admin_clients import change_tier_answer, record_billing_answer
from api.schemas_admin import BillingRequest, ChangeTierRequest, EventOut
from api.services import Services
from coordinator.accounts import Accounts

PREFIX = "/admin/v1/clients/"
JSON_TYPE = b"application/json"
_BEARER = b"bearer "
_MAX_AUTHORIZATION = 1024  # as api.deps.bearer_token
_MAX_CLIENT_ID = 64  # as the route's ClientIdPath
_EVENT_OUT = TypeAdapter(EventOut)  # a pydantic dataclass: serialised as the route does


class _Fallback(Exception):
    """Not provably valid here: the reference route answers."""


def _action(scope: Scope) -> tuple[str, str] | None:
    """(client id, "tier" or "billing") for exactly the two lean routes, else None."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    client_id, slash, action = path[len(PREFIX) :].partition("/")
    if not slash or action not in ("tier", "billing"):
        return None
    if not client_id or len(client_id) > _MAX_CLIENT_ID:
        return None
    return client_id, action


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None, bool]:
    """The request's Authorization and Content-Type values (None when absent), and
    whether it declares a Content-Length (the body cap then answered before any read)."""
    authorization = content_type = None
    sized = False
    for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
        if name == b"authorization" and authorization is None:
            authorization = bytes(value)
        elif name == b"content-type" and content_type is None:
            content_type = bytes(value)
        elif name == b"content-length":
            sized = True
    return authorization, content_type, sized


def _model(body: bytes, model: type[BaseModel]) -> Any:
    """The body as the route's model accepts it (the same validation), or _Fallback."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Fallback from None
    if type(doc) is not dict:
        raise _Fallback
    try:
        return model.model_validate(doc)
    except ValidationError:
        raise _Fallback from None


async def _send(send: Send, status: int, body: bytes, retry_after: int | None) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON_TYPE)]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LeanAdmin:
    """ASGI middleware serving provably valid tier changes and billing records itself.

    The tokens and the accounts are read from the app's ``Services`` per request, as
    the route's dependencies read them.
    """

    def __init__(self, app: ASGIApp, *, routes: dict[str, BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # "tier"/"billing" -> the reference route (log, metrics)

    @staticmethod
    def _actor(services: Services, authorization: bytes | None) -> str | None:
        """As api.deps.require_admin for the two tokens it knows; None: the route decides."""
        if authorization is None or len(authorization) > _MAX_AUTHORIZATION:
            return None
        if authorization[:7].lower() != _BEARER:
            return None
        token = authorization[7:].decode("latin-1").strip()
        if not token:
            return None
        presented = token.encode()
        # Both compares always run, so timing says nothing about which token was close.
        is_admin = hmac.compare_digest(presented, services.admin_token)
        scheduler = services.scheduler_token
        is_scheduler = scheduler is not None and hmac.compare_digest(presented, scheduler)
        if is_admin:
            return "admin"
        if is_scheduler:
            return "scheduler"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        action = _action(scope)
        if action is None:
            await self.app(scope, receive, send)
            return
        services: Services = scope["app"].services
        authorization, content_type, sized = _headers(scope)
        actor = self._actor(services, authorization)
        # Without a Content-Length (a chunked body) the body cap can trip while reading:
        # the route answers that one, as it always did.
        if actor is None or content_type != JSON_TYPE or not sized:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
        except Disconnected:
            await self.app(scope, receive, send)  # the route finds the same
            return
        client_id, kind = action
        try:
            request = _model(body, ChangeTierRequest if kind == "tier" else BillingRequest)
        except _Fallback:
            await self.app(scope, replay_body(body, receive), send)
            return
        scope["route"] = self.routes[kind]  # for the request log and the metrics
        scope["path_params"] = {"client_id": client_id}
        try:
            status, answer = await _handle(services.accounts, kind, client_id, request, actor)
        except Exception as exc:
            parts = error_parts(exc)
            if parts is None:
                raise  # a defect: the request middleware answers 500 and logs it
            code_status, code, message, retry_after = parts
            request_id = str((scope.get("state") or {}).get("request_id", ""))
            body = error_body(code_status, code, message, request_id)
            await _send(send, code_status, body, retry_after)
            return
        await _send(send, status, answer, None)


async def _handle(
    accounts: Accounts, kind: str, client_id: str, request: Any, actor: str
) -> tuple[int, bytes]:
    """The route's own call and answer (one builder for both): (status, JSON body)."""
    if kind == "tier":
        out = await change_tier_answer(accounts, client_id, request, actor)
        return 200, out.model_dump_json().encode()
    return 201, _EVENT_OUT.dump_json(
        await record_billing_answer(accounts, client_id, request, actor)
    )


def lean_admin_routes(router: APIRouter) -> dict[str, BaseRoute]:
    """The reference routes of the lean actions in ``router`` (admin_clients.router)."""
    wanted = {f"{PREFIX}{{client_id}}/{kind}": kind for kind in ("tier", "billing")}
    found: dict[str, BaseRoute] = {
        wanted[r.path]: r
        for r in router.routes
        if isinstance(r, APIRoute) and r.path in wanted and "POST" in (r.methods or ())
    }
    if len(found) != len(wanted):
        raise RuntimeError(f"the lean admin routes are missing: {sorted(wanted)}")
    return found
