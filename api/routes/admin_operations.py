"""Admin plane: pause/resume, the census and metered usage (shared/API.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AccountsDep, AdminActor, CensusDep, PauseDep
from api.errors import Invalid
from api.routes.admin_clients import ClientIdPath, domain_errors
from api.routing import OrjsonRoute
from api.schemas_admin import AdminRequest, ClientOut, EventOut, ReasonRequest, event_out
from coordinator.accounts import FlagBillingAnomaly
from coordinator.usage import usage_since

router = APIRouter(prefix="/admin/v1", tags=["admin: operations"], route_class=OrjsonRoute)


class PauseRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "unpaid invoice INV-42"}]}
    )

    reason: str = Field(min_length=1, max_length=200)


class CensusRequest(AdminRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"date": None}]})

    date: str | None = Field(
        default=None,
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="UTC day the census is for (default today); one census per day.",
    )


class CensusOut(BaseModel):
    date: str
    archive: str
    sha256: str
    clients: int
    totals: dict[str, int]
    head_seq: int
    head_hash: str
    event: EventOut


class CensusTakeOut(CensusOut):
    taken: bool = Field(description="False when the day already had its census (a no-op).")


class CensusListOut(BaseModel):
    snapshots: list[CensusOut]


class UsageRowOut(BaseModel):
    client_id: str
    requests: int
    rejected: int
    queries: int
    vectors_upserted: int
    vectors_stored: int
    bytes_stored: int
    periods: int
    first_period_start: str
    last_period_end: str


class UsageOut(BaseModel):
    since: str
    clients: list[UsageRowOut]


def _census_out(stored: Any) -> dict[str, Any]:
    data = stored.to_event().model_dump()
    return {
        "date": data["date"],
        "archive": data["archive"],
        "sha256": data["sha256"],
        "clients": data["clients"],
        "totals": data["totals"],
        "head_seq": data["head_seq"],
        "head_hash": data["head_hash"],
        "event": event_out(stored),
    }


@router.post("/clients/{client_id}/pause", response_model=ClientOut)
async def pause_client(
    client_id: ClientIdPath, body: PauseRequest, actor: AdminActor, pause: PauseDep
) -> ClientOut:
    """Pause: data-plane requests get 423 at once; the data moves to cold storage."""
    with domain_errors():
        view = await pause.pause(client_id, body.reason, actor, automatic=actor == "scheduler")
    return ClientOut.model_validate(view, from_attributes=True)


@router.post("/clients/{client_id}/resume", response_model=ClientOut)
async def resume_client(
    client_id: ClientIdPath, body: ReasonRequest, actor: AdminActor, pause: PauseDep
) -> ClientOut:
    """Resume (``{"reason"}`` required): the data moves back to hot, then requests are served."""
    with domain_errors():
        view = await pause.resume(client_id, actor, body.reason)
    return ClientOut.model_validate(view, from_attributes=True)


@router.get("/clients/{client_id}/storage")
async def client_storage(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep, pause: PauseDep
) -> dict[str, Any]:
    """Where the client's data is (hot or cold); for cold data its collections and counts."""
    with domain_errors():
        await accounts.get_client(client_id)
    return await pause.storage(client_id)


@router.get("/census", response_model=CensusListOut)
async def list_census(actor: AdminActor, census: CensusDep) -> CensusListOut:
    """Every census snapshot, oldest first."""
    snapshots = [_census_out(s) for s in await census.list()]
    return CensusListOut.model_validate({"snapshots": snapshots})


@router.post("/census", response_model=CensusTakeOut)
async def take_census(
    actor: AdminActor, census: CensusDep, body: CensusRequest | None = None
) -> CensusTakeOut:
    """Take the census for a day now (default today, UTC); a second one is a no-op."""
    day = (body.date if body else None) or datetime.now(UTC).date().isoformat()
    try:
        stored, taken = await census.take(day, actor)
    except ValueError as exc:
        raise Invalid(f"date: {exc}") from None
    return CensusTakeOut.model_validate({**_census_out(stored), "taken": taken})


@router.get("/usage", response_model=UsageOut)
async def usage(
    actor: AdminActor,
    accounts: AccountsDep,
    since: Annotated[
        datetime | None,
        Query(description="ISO-8601 time; usage periods ending after it (default: last 24 h)."),
    ] = None,
) -> UsageOut:
    """Metered usage per client, summed over the recorded periods since ``since``."""
    moment = since or datetime.now(UTC) - timedelta(days=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    rows = await usage_since(accounts, moment)
    return UsageOut.model_validate({"since": moment.isoformat(), "clients": rows})


class AnomalyRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"metric": "requests", "observed": 90000, "baseline": 1200, "window_hours": 24}
            ]
        },
    )

    metric: str = Field(min_length=1, max_length=64)
    observed: float = Field(ge=0)
    baseline: float = Field(ge=0)
    window_hours: int = Field(ge=1, le=24 * 31)


@router.post("/clients/{client_id}/anomalies", status_code=201, response_model=EventOut)
async def flag_anomaly(
    client_id: ClientIdPath, body: AnomalyRequest, actor: AdminActor, accounts: AccountsDep
) -> EventOut:
    """Record BillingAnomalyDetected with the figures that triggered it (the scheduler's rule)."""
    with domain_errors():
        stored = await accounts.handle(
            FlagBillingAnomaly(
                client_id=client_id,
                metric=body.metric,
                observed=body.observed,
                baseline=body.baseline,
                window_hours=body.window_hours,
                actor=actor,
            )
        )
    return event_out(stored)
