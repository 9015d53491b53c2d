"""Operators' view of the worker fleet."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from api.deps import AdminActor, DataPlaneDep, HubDep
from api.errors import NotFound
from api.routing import OrjsonRoute, json_response

router = APIRouter(prefix="/admin/v1", tags=["admin: workers"], route_class=OrjsonRoute)
log = logging.getLogger("vectorpanda.admin")

MAX_LISTED = 1000  # tenant ids listed per worker; the count is always exact


class WorkerOut(BaseModel):
    worker_id: str
    state: str
    pid: int
    tenants: int
    tenant_ids: list[str]
    heartbeat_age_s: float | None
    connected_for_s: float | None
    load: dict[str, Any]
    reason: str | None = None


class WorkersOut(BaseModel):
    workers: list[WorkerOut]
    placement_changes: int
    worker_losses: int
    # the coordinator process that answered (VP_COORDINATOR_PROCESSES: one of several)
    coordinator: dict[str, Any] | None = None


@router.get("/workers", response_model=WorkersOut)
async def list_workers(actor: AdminActor, hub: HubDep, dataplane: DataPlaneDep) -> Response:
    """Workers with state, tenants, heartbeat age and load; recently departed ones too."""
    tenant_router = dataplane.router
    now = time.monotonic()
    rows: list[dict[str, Any]] = [
        {
            "worker_id": link.worker_id,
            "state": "live",
            "pid": link.pid,
            "tenants": len(tenant_router.tenants_of(link.worker_id)),
            "tenant_ids": sorted(tenant_router.tenants_of(link.worker_id))[:MAX_LISTED],
            "heartbeat_age_s": round(link.heartbeat_age(), 3),
            "connected_for_s": round(now - link.connected_at, 3),
            "load": link.load,
        }
        for link in hub.live()
    ]
    rows += [
        {
            "worker_id": gone.worker_id,
            "state": "down",
            "pid": gone.pid,
            "tenants": 0,
            "tenant_ids": [],
            "heartbeat_age_s": None,
            "connected_for_s": None,
            "load": {},
            "reason": gone.why,
        }
        for gone in hub.departed.values()
    ]
    rows.sort(key=lambda r: r["worker_id"])
    return json_response(
        {
            "workers": rows,
            "placement_changes": tenant_router.placement_changes,
            "worker_losses": hub.losses,
            "coordinator": {"pid": os.getpid(), "leads_placement": tenant_router.leading()},
        }
    )


class DrainOut(BaseModel):
    worker_id: str
    moved: list[str]


@router.post("/workers/{worker_id}/drain", response_model=DrainOut)
async def drain_worker(
    worker_id: str, actor: AdminActor, hub: HubDep, dataplane: DataPlaneDep
) -> Response:
    """Move every tenant off a worker (for maintenance); it gets none until it reconnects."""
    link = hub.links.get(worker_id)
    if link is None or not link.alive:
        raise NotFound(f"worker '{worker_id[:80]}' is not connected")
    moved = await dataplane.router.drain(worker_id)
    log.info("worker %s drained by %s: %d tenants moved", worker_id, actor, len(moved))
    return json_response({"worker_id": worker_id, "moved": moved})
