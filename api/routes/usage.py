"""The caller's own usage and limits."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response

from api.deps import DataPlaneDep, ReadKey
from api.routing import OrjsonRoute, json_response
from api.schemas import UsageResponse

router = APIRouter(prefix="/v1", tags=["usage"], route_class=OrjsonRoute)


@router.get("/usage", response_model=UsageResponse)
async def usage(key: ReadKey, dataplane: DataPlaneDep) -> Response:
    """Collections, vectors and bytes stored, with the limits that apply."""
    figures = await dataplane.usage(key.client_id)
    limits = asdict(dataplane.limits)
    limits.pop("max_query_vectors", None)
    limits.pop("max_ids_per_request", None)
    return json_response(
        {
            "client_id": key.client_id,
            "tier": key.tier,
            "status": key.status,
            **figures,
            "limits": limits,
        }
    )
