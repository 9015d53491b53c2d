"""``GET /metrics``: Prometheus text format. Internal only: nginx answers 404 for it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from api.deps import MetricsDep
from coordinator.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(registry: MetricsDep) -> Response:
    """Request, worker, frame and event-lag metrics for Prometheus."""
    registry.snapshot()  # live worker state is read on the loop that owns it
    body = await asyncio.to_thread(registry.render)
    return Response(content=body, media_type=CONTENT_TYPE)
