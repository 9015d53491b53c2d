"""Liveness and readiness probes (unauthenticated)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import AccountsDep, HubDep
from api.routing import json_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    """The process is alive."""
    return json_response({"ok": True})


@router.get("/readyz")
async def readyz(hub: HubDep, accounts: AccountsDep) -> Response:
    """At least one live worker with room for writes, and the control-plane store is writable.

    ``short_of_space`` names every worker store below its free-space floor.
    """
    links = hub.live()
    store_ok = await accounts.writable()
    short = short_of_space(links)
    hot_short = {s["worker"] for s in short if s["store"] == "hot"}
    can_write = any(link.worker_id not in hot_short for link in links)
    ready = bool(links) and store_ok and can_write
    body = {
        "ready": ready,
        "live_workers": len(links),
        "store_writable": store_ok,
        "short_of_space": short,
    }
    return json_response(body, status_code=200 if ready else 503)


def short_of_space(links: list[Any]) -> list[dict[str, Any]]:
    """Each live worker's store whose heartbeat reported free space below the floor."""
    short = []
    for link in links:
        for store, figures in sorted(link.space.items()):
            free, floor = figures.get("free_bytes"), figures.get("min_free_bytes")
            if free is not None and floor is not None and free < floor:
                short.append(
                    {
                        "worker": link.worker_id,
                        "store": store,
                        "free_bytes": free,
                        "min_free_bytes": floor,
                    }
                )
    return short
