"""Collections of the calling client: create, list, get, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from api.deps import AccountsDep, DataPlaneDep, ManageKey, ReadKey, get_backups, tier_limits
from api.errors import Invalid, NotFound
from api.routes.snapshots import create_from_snapshot
from api.routing import OrjsonRoute, json_response
from api.schemas import (
    NAME_PATTERN,
    NAME_RE,
    Collection,
    CollectionIndexing,
    CollectionList,
    CreateCollection,
)
from coordinator.accounts import (
    Accounts,
    RecordCollectionCreated,
    RecordCollectionDeleted,
    StoreUnavailable,
)
from coordinator.tiers import dimension_refusal

router = APIRouter(prefix="/v1/collections", tags=["collections"], route_class=OrjsonRoute)

CollectionName = Annotated[str, Path(description=f"Matches {NAME_PATTERN}")]


async def writable_control_store(accounts: Accounts) -> None:
    """Refuse before acting when the collection event could not be recorded afterwards."""
    if not await accounts.writable():
        raise StoreUnavailable("it cannot take a write transaction")


def known_name(name: str) -> str:
    """A name that cannot exist is answered like any missing collection."""
    if not NAME_RE.match(name):
        raise NotFound(f"collection '{name[:80]}' not found")
    return name


@router.post("", status_code=201, response_model=Collection)
async def create_collection(
    body: CreateCollection,
    key: ManageKey,
    dataplane: DataPlaneDep,
    accounts: AccountsDep,
    request: Request,
) -> Response:
    """Create a collection for the calling client (empty, or from one of its snapshots)."""
    refusal = dimension_refusal(key.tier, body.dimension, dataplane.limits.max_dimension)
    if refusal is not None:
        raise Invalid(refusal)
    await writable_control_store(accounts)
    if body.from_snapshot is not None:
        info = await create_from_snapshot(body, key, dataplane, await get_backups(request))
    else:
        info = await dataplane.create_collection(
            key.client_id,
            body.name,
            body.dimension,
            body.metric,
            body.index,
            body.hnsw.model_dump() if body.hnsw else None,
            max_collections=tier_limits(key).max_collections,
        )
    # Recorded only once the worker has confirmed; the actor is the key that asked.
    try:
        await accounts.handle(
            RecordCollectionCreated(
                key.client_id,
                body.name,
                body.dimension,
                body.metric,
                body.index,
                f"key:{key.key_id}",
            )
        )
    except StoreUnavailable:
        # Unrecorded, the collection must not exist either: no partial state.
        await dataplane.delete_collection(key.client_id, body.name)
        raise
    return json_response(info, status_code=201)


@router.get("", response_model=CollectionList)
async def list_collections(key: ReadKey, dataplane: DataPlaneDep) -> Response:
    """List the calling client's collections (never anyone else's)."""
    return json_response({"collections": await dataplane.list_collections(key.client_id)})


@router.get("/{name}", response_model=Collection)
async def get_collection(name: CollectionName, key: ReadKey, dataplane: DataPlaneDep) -> Response:
    """One collection with its vector count."""
    return json_response(await dataplane.get_collection(key.client_id, known_name(name)))


@router.get("/{name}/indexing", response_model=CollectionIndexing)
async def collection_indexing(
    name: CollectionName, key: ReadKey, dataplane: DataPlaneDep
) -> Response:
    """How many of the collection's vectors its HNSW graph holds and how many still wait
    to be inserted (after a bulk import); a flat collection is always fully indexed."""
    return json_response(await dataplane.collection_indexing(key.client_id, known_name(name)))


@router.delete("/{name}", status_code=204)
async def delete_collection(
    name: CollectionName, key: ManageKey, dataplane: DataPlaneDep, accounts: AccountsDep
) -> Response:
    """Delete a collection and all its vectors."""
    await writable_control_store(accounts)
    files = await dataplane.delete_collection(key.client_id, known_name(name))
    actor = f"key:{key.key_id}"
    await accounts.handle(RecordCollectionDeleted(key.client_id, name, actor, tuple(files)))
    return Response(status_code=204)
