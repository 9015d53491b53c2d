"""The leader's internal placement API, for follower coordinator processes.

Served on a loopback port of its own (never the public one), authenticated with the
worker secret. Only the process that leads placement answers; any other says 409, and
the follower asks again once the leader's address file (on PostgreSQL: the membership
table) names the new leader.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerGone
from coordinator.router import TenantRouter
from eventlog.events import CLIENT_ID_PATTERN

# A tenant is its client: the same id.
_TENANT = re.compile(CLIENT_ID_PATTERN)


def check_tenant_id(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise ValueError("invalid tenant id")
    return tenant


def _text(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ValueError(f"{name} is required")
    return value


def internal_app(router: TenantRouter, secret: str, leading: Callable[[], bool]) -> Starlette:
    """The Starlette app of ``/internal/v1/{place,release,move,drain}``."""
    expected = f"Bearer {secret}".encode()

    async def handle(request: Request) -> JSONResponse:
        presented = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(presented, expected):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if not leading():
            return JSONResponse({"error": "not the leader"}, status_code=409)
        try:
            body = await request.json()
            action = request.path_params["action"]
            deadline = time.monotonic() + router.timeout_s
            if action == "place":
                tenant = check_tenant_id(_text(body, "tenant"))
                refused_by, refused_epoch = body.get("refused_by"), body.get("refused_epoch")
                if isinstance(refused_by, str) and isinstance(refused_epoch, int):
                    router.forget_assignment(tenant, refused_by, refused_epoch)
                link, epoch = await router._owner(tenant, deadline)
                return JSONResponse({"worker_id": link.worker_id, "epoch": epoch})
            if action == "release":
                await router.release(check_tenant_id(_text(body, "tenant")))
                return JSONResponse({})
            if action == "move":
                tenant = check_tenant_id(_text(body, "tenant"))
                await router.move(tenant, _text(body, "to"))
                return JSONResponse({})
            if action == "drain":
                return JSONResponse({"moved": await router.drain(_text(body, "worker_id"))})
        except (TenantUnavailable, WorkerGone) as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)[:200]}, status_code=400)
        return JSONResponse({"error": "unknown action"}, status_code=404)

    return Starlette(routes=[Route("/internal/v1/{action}", handle, methods=["POST"])])
