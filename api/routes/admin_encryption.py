"""Admin plane: clients' data keys (rotation) and the deletion receipts of deleted clients."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AccountsDep, AdminActor, DataKeysDep, DataPlaneDep, RotationsDep
from api.errors import Conflict, NotFound, Unavailable
from api.routes.admin_clients import ClientIdPath
from api.routing import OrjsonRoute
from coordinator.accounts import ClientNotFound
from coordinator.data_keys import DataKeys
from eventlog.events import ClientDeleted, ClientStatus

log = logging.getLogger("vectorpanda.api")

router = APIRouter(prefix="/admin/v1", tags=["admin: encryption"], route_class=OrjsonRoute)


class RotateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})

    reason: str | None = Field(default=None, min_length=1, max_length=500)


class RotationOut(BaseModel):
    key_version: int
    status: str = Field(examples=["rotating"])


class ReceiptFileOut(BaseModel):
    path: str
    sha256: str


class DeletionReceiptOut(BaseModel):
    client_id: str
    deleted_at: str
    data_key_id: str | None
    data_key_ids: list[str]
    files: list[ReceiptFileOut]
    files_hashed_at: str
    chain_head_seq: int
    chain_head_hash: str
    event_seq: int
    event_hash: str


def _configured(data_keys: DataKeys | None) -> DataKeys:
    if data_keys is None:
        raise Unavailable("Encryption at rest is not configured on this coordinator.")
    return data_keys


@router.post("/clients/{client_id}/rotate-key", status_code=202, response_model=RotationOut)
async def rotate_key(
    client_id: ClientIdPath,
    actor: AdminActor,
    accounts: AccountsDep,
    dataplane: DataPlaneDep,
    configured: DataKeysDep,
    running: RotationsDep,
    body: RotateKeyRequest | None = None,
) -> JSONResponse:
    """Re-encrypt the client's data under a new data key, in the background.

    Records ``client.data_key_rotated`` once every file is rewritten and the old key is
    retired (kept for older backups; destroyed with the client). Asking again while a
    rotation runs reports that rotation's version.
    A paused client is refused (409): resume it first.
    """
    data_keys = _configured(configured)
    try:
        client = await accounts.get_client(client_id)
        if client.status == ClientStatus.PAUSED:  # its files are cold: no worker may rewrite them
            raise Conflict("The client is paused; resume it before rotating its data key.")
        version, _started = await data_keys.begin_rotation(client_id)
    except ClientNotFound:
        raise NotFound("client not found") from None
    reason = body.reason if body is not None else None
    task = asyncio.create_task(data_keys.rotate(client_id, version, dataplane, actor, reason))
    running.add(task)
    task.add_done_callback(_finished(running, client_id))
    return JSONResponse({"key_version": version, "status": "rotating"}, status_code=202)


def _finished(running: set[asyncio.Task[Any]], client_id: str) -> Any:
    def done(task: asyncio.Task[Any]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "data key rotation of %s stopped (%s); it resumes when asked again "
                "or at the next start",
                client_id,
                task.exception(),
            )

    return done


@router.get("/clients/{client_id}/deletion-receipt", response_model=DeletionReceiptOut)
async def deletion_receipt(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep
) -> DeletionReceiptOut:
    """The receipt recorded when the client was deleted; 404 unless it was."""
    events = await accounts.list_events(client_id=client_id, type=ClientDeleted.event_type, limit=1)
    if not events:
        raise NotFound("no deletion receipt: the client exists or never did")
    stored = events[0]
    receipt = stored.to_event().model_dump(mode="json").get("receipt")
    if receipt is None:
        raise NotFound("the client was deleted before deletion receipts were recorded")
    keys = list(receipt["data_key_ids"])
    return DeletionReceiptOut(
        client_id=client_id,
        deleted_at=stored.occurred_at,
        data_key_id=keys[-1] if keys else None,
        data_key_ids=keys,
        files=[ReceiptFileOut(**f) for f in receipt["files"]],
        files_hashed_at=receipt["files_hashed_at"],
        chain_head_seq=receipt["chain_head_seq"],
        chain_head_hash=receipt["chain_head_hash"],
        event_seq=stored.seq,
        event_hash=stored.hash,
    )
