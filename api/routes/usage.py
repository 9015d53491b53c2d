"""The caller's own usage and limits."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response
from pydantic import BaseModel

from api.deps import DataPlaneDep, ReadKey
from api.routing import OrjsonRoute, json_response
from api.schemas import UsageLimits, UsageResponse
from coordinator.tiers import usage_limits

router = APIRouter(prefix="/v1", tags=["usage"], route_class=OrjsonRoute)


class TierUsageLimits(UsageLimits):
    """Per-request limits of the server plus the quotas and rate of the caller's tier."""

    max_collections: int
    max_vectors: int
    requests_per_second: float
    burst: int


class QuotaFigure(BaseModel):
    used: int
    limit: int
    remaining: int


class Quotas(BaseModel):
    collections: QuotaFigure
    vectors: QuotaFigure


class TierUsageResponse(UsageResponse):
    """Usage against the limits of the caller's tier (``max_dimension`` is the tier's cap)."""

    limits: TierUsageLimits
    quotas: Quotas


def _figure(used: int, limit: int) -> dict[str, int]:
    return {"used": used, "limit": limit, "remaining": max(0, limit - used)}


@router.get("/usage", response_model=TierUsageResponse)
async def usage(key: ReadKey, dataplane: DataPlaneDep) -> Response:
    """Collections, vectors and bytes stored, against the limits of the caller's tier."""
    figures = await dataplane.usage(key.client_id)
    limits = asdict(dataplane.limits)
    limits.pop("max_query_vectors", None)
    limits.pop("max_ids_per_request", None)
    limits.pop("max_filter_depth", None)
    limits.pop("max_filter_operands", None)
    limits.update(usage_limits(key.tier, dataplane.limits.max_dimension))
    return json_response(
        {
            "client_id": key.client_id,
            "tier": key.tier,
            "status": key.status,
            **figures,
            "limits": limits,
            "quotas": {
                "collections": _figure(figures["collections"], limits["max_collections"]),
                "vectors": _figure(figures["vectors"], limits["max_vectors"]),
            },
        }
    )
