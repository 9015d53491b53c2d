"""Data plane: a client's own snapshots of one collection, and collections made from them.

A snapshot is a one-collection backup taken by the same machinery as the operators'
backups (``coordinator.backups``); it lives in the client's part of the backup store,
so another client's snapshot id is simply not found.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict

from api.deps import BackupsDep, DataPlaneDep, ManageKey, tier_limits
from api.errors import Conflict, NotFound, QuotaExceeded
from api.routes.admin_backups import job_status
from api.routing import OrjsonRoute, json_response
from api.schemas import NAME_RE, CreateCollection, Strict
from coordinator.accounts.model import Principal
from coordinator.backups import BackupRefused, BackupService
from coordinator.dataplane import DataPlane

router = APIRouter(prefix="/v1/collections", tags=["snapshots"], route_class=OrjsonRoute)


class TakeSnapshot(Strict):
    """No fields: the snapshot is of the collection named in the path."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{}]})


class SnapshotStarted(BaseModel):
    snapshot_id: str
    status: Literal["running", "complete", "failed"]


class Snapshot(BaseModel):
    snapshot_id: str
    status: Literal["running", "complete", "failed"]
    created_at: str | None
    vectors: int
    bytes: int


class SnapshotList(BaseModel):
    snapshots: list[Snapshot]


def _known(name: str) -> str:
    if not NAME_RE.match(name):
        raise NotFound(f"collection '{name[:80]}' not found")
    return name


@router.post("/{name}/snapshots", status_code=202, response_model=SnapshotStarted)
async def take_snapshot(
    name: str, body: TakeSnapshot, key: ManageKey, dataplane: DataPlaneDep, backups: BackupsDep
) -> Response:
    """Snapshot one collection (consistent, while it keeps serving), in the background."""
    await dataplane.get_collection(key.client_id, _known(name))  # 404 if it does not exist
    job = await backups.start(
        key.client_id, f"key:{key.key_id}", kind="snapshot", collections=[name]
    )
    return json_response({"snapshot_id": job.job_id, "status": "running"}, status_code=202)


@router.get("/{name}/snapshots", response_model=SnapshotList)
async def list_snapshots(name: str, key: ManageKey, backups: BackupsDep) -> Response:
    """Snapshots of the collection, oldest first (kept after the collection is deleted)."""
    rows = await backups.backups_of(key.client_id, kind="snapshot", collection=_known(name))
    snapshots = [
        {
            "snapshot_id": r["backup_id"],
            "status": job_status(str(r["status"])),
            "created_at": r["started_at"],
            "vectors": r["vectors"],
            "bytes": r["bytes"],
        }
        for r in rows
    ]
    return json_response({"snapshots": snapshots})


async def create_from_snapshot(
    body: CreateCollection, key: Principal, dataplane: DataPlane, backups: BackupService
) -> dict[str, Any]:
    """Restore a snapshot of one of the caller's collections as the new collection."""
    assert body.from_snapshot is not None
    try:
        manifest = await backups.manifest(key.client_id, body.from_snapshot)
    except BackupRefused:
        raise NotFound("snapshot not found") from None
    if manifest.get("kind") != "snapshot" or len(manifest.get("collections", [])) != 1:
        raise NotFound("snapshot not found")
    source = manifest["collections"][0]
    spec = source.get("spec", {})
    if (spec.get("dimension"), spec.get("metric"), spec.get("index")) != (
        body.dimension,
        body.metric,
        body.index,
    ):
        raise Conflict(
            f"the snapshot is of a {spec.get('dimension')}-d {spec.get('metric')} "
            f"{spec.get('index')} collection; dimension, metric and index must match it"
        )
    limits = tier_limits(key)
    existing = await dataplane.list_collections(key.client_id)
    if len(existing) >= limits.max_collections:
        raise QuotaExceeded(
            f"collection quota exceeded: the limit is {limits.max_collections} collections"
        )
    stored = sum(int(c.get("vector_count", 0)) for c in existing)
    if stored + int(source.get("vectors", 0)) > limits.max_vectors:
        raise QuotaExceeded(
            f"vector quota exceeded: the snapshot holds {source.get('vectors')} vectors, "
            f"the client has {stored}, the limit is {limits.max_vectors}"
        )
    job = await backups.restore(
        key.client_id,
        body.from_snapshot,
        f"key:{key.key_id}",
        rename={source["name"]: body.name},
        record_created=False,  # the create route records it, as for any new collection
    )
    await backups.settle(job, None)
    if job.status != "complete":
        raise BackupRefused(str(job.result.get("code", "unavailable")), job.error or "failed")
    return await dataplane.get_collection(key.client_id, body.name)
