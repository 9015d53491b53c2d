"""Admin plane: per-client backups, restores and the restore drill (shared/API.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AccountsDep, AdminActor, BackupsDep
from api.routes.admin_clients import ClientIdPath, domain_errors
from api.routing import OrjsonRoute
from api.schemas import NAME_PATTERN
from api.schemas_admin import AdminRequest
from coordinator.backups import BackupRefused

router = APIRouter(prefix="/admin/v1", tags=["admin: backups"], route_class=OrjsonRoute)

# A restore small enough to finish in this long answers with its outcome.
RESTORE_ANSWER_WAIT_S = 5.0
BACKUP_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"


CollectionName = Annotated[str, Field(pattern=NAME_PATTERN)]
Status = Literal["running", "complete", "failed"]


def job_status(value: str) -> Status:
    """A job's status as the API names it."""
    return "complete" if value == "complete" else "failed" if value == "failed" else "running"


class StartBackupRequest(AdminRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})


class BackupStartedOut(BaseModel):
    backup_id: str
    status: Status
    started_at: str


class BackupOut(BaseModel):
    backup_id: str
    status: Status
    started_at: str | None
    completed_at: str | None
    collections: list[str]
    vectors: int
    bytes: int
    head_seq: int = Field(description="The event log's head (signed) when the backup was taken.")


class BackupListOut(BaseModel):
    backups: list[BackupOut]


class RestoreRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"backup_id": "b-20270101t013000-1a2b3c4d"},
                {
                    "backup_id": "b-20270101t013000-1a2b3c4d",
                    "collections": ["docs"],
                    "into_collection_suffix": "_restored",
                },
            ]
        },
    )

    backup_id: str = Field(pattern=BACKUP_ID_PATTERN, max_length=64)
    collections: list[CollectionName] | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description=f"Names (matching {NAME_PATTERN}) to restore; default every one.",
    )
    into_collection_suffix: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_-]{1,20}$",
        description="Restore beside the live data as <name><suffix>; default in place.",
    )


class RestoreOut(BaseModel):
    restore_id: str
    status: Status
    restored: list[str] = Field(default_factory=list, description="Collections restored.")
    error: str | None = None


@router.post("/clients/{client_id}/backups", status_code=202, response_model=BackupStartedOut)
async def start_backup(
    client_id: ClientIdPath, body: StartBackupRequest, actor: AdminActor, backups: BackupsDep
) -> BackupStartedOut:
    """Take a consistent backup of every collection of the client, in the background."""
    with domain_errors():
        job = await backups.start(client_id, actor, prune=True)
    return BackupStartedOut(backup_id=job.job_id, status="running", started_at=job.started_at)


@router.get("/clients/{client_id}/backups", response_model=BackupListOut)
async def list_backups(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep, backups: BackupsDep
) -> BackupListOut:
    """The client's backups, oldest first: complete ones, and running or failed ones."""
    with domain_errors():
        await accounts.get_client(client_id)
    rows = await backups.backups_of(client_id)
    return BackupListOut(backups=[BackupOut.model_validate(r) for r in rows])


@router.post("/clients/{client_id}/restore", status_code=202, response_model=RestoreOut)
async def restore_backup(
    client_id: ClientIdPath, body: RestoreRequest, actor: AdminActor, backups: BackupsDep
) -> RestoreOut:
    """Restore a backup in place or beside the live data; every checksum is verified first."""
    with domain_errors():
        job = await backups.restore(
            client_id,
            body.backup_id,
            actor,
            collections=body.collections,
            suffix=body.into_collection_suffix,
        )
    await backups.settle(job, RESTORE_ANSWER_WAIT_S)
    code = str(job.result.get("code", ""))
    if job.status == "failed" and code in ("not_found", "conflict", "invalid"):
        raise BackupRefused(code, job.error or "restore refused")
    return RestoreOut(
        restore_id=job.job_id,
        status=job_status(job.status),
        restored=list(job.result.get("restored", [])) if job.status == "complete" else [],
        error=job.error,
    )


class DrillOut(BaseModel):
    ok: bool = Field(description="False when any backup failed its checksums or counts.")
    clients: int
    backups: int
    bytes: int
    vectors: int
    failures: list[str]


class DrillRequest(AdminRequest):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})


@router.post("/backups/drill", response_model=DrillOut)
async def restore_drill(body: DrillRequest, actor: AdminActor, backups: BackupsDep) -> DrillOut:
    """Restore each client's newest backup into a scratch directory and check it (an event)."""
    report = await backups.drill(actor)
    return DrillOut.model_validate(report.to_json())
