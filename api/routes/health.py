"""Liveness and readiness probes (unauthenticated)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.routing import json_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is alive."""
    return json_response({"ok": True})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """At least one live worker, and the store is writable."""
    live = len(request.app.state.hub.live())
    store_ok = await request.app.state.accounts.writable()
    ready = live > 0 and store_ok
    body = {"ready": ready, "live_workers": live, "store_writable": store_ok}
    return json_response(body, status_code=200 if ready else 503)
