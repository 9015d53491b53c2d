"""Everyday operations on a collection's vectors: list (a cursor walk), count, update metadata."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import DataPlaneDep, ReadKey, WriteKey
from api.errors import Invalid, PayloadTooLarge
from api.filter_bounds import check_filter_bounds
from api.routes.collections import CollectionName, known_name
from api.routing import OrjsonRoute, json_response
from api.schemas_records import (
    CountRequest,
    CountResponse,
    ListRequest,
    ListResponse,
    UpdateRequest,
    UpdateResponse,
)
from coordinator.list_cursor import CursorError

router = APIRouter(prefix="/v1/collections", tags=["vectors"], route_class=OrjsonRoute)

BAD_CURSOR = (
    "cursor is not valid here: pass the next_cursor of a previous page of a listing of "
    "this same collection, unchanged"
)


@router.post(
    "/{name}/list",
    response_model=ListResponse,
    description="Ids in ascending UTF-8 byte order, `limit` per page. Pass `next_cursor` back "
    "as `cursor` for the next page; it is null on the last one. A walk, not a snapshot: a "
    "vector written meanwhile may or may not appear, but no id appears twice and none "
    "present throughout is skipped.",
)
async def list_vectors(
    name: CollectionName, body: ListRequest, key: ReadKey, dataplane: DataPlaneDep
) -> Response:
    """One page of the collection's vector ids (with metadata and values if asked)."""
    check_filter_bounds(body.filter, dataplane.limits)
    try:
        page = await dataplane.list_vectors(
            key.client_id,
            known_name(name),
            limit=body.limit,
            cursor=body.cursor,
            filter=body.filter,
            include_metadata=body.include_metadata,
            include_values=body.include_values,
        )
    except CursorError:
        raise Invalid(BAD_CURSOR) from None
    vectors = []
    for v in page.vectors:
        item: dict[str, Any] = {"id": v.id}
        if v.metadata is not None:
            item["metadata"] = v.metadata
        if v.values is not None:
            item["values"] = v.values
        vectors.append(item)
    return json_response({"vectors": vectors, "next_cursor": page.next_cursor})


@router.post("/{name}/count", response_model=CountResponse)
async def count_vectors(
    name: CollectionName, body: CountRequest, key: ReadKey, dataplane: DataPlaneDep
) -> Response:
    """The exact number of vectors, or of those matching the filter."""
    check_filter_bounds(body.filter, dataplane.limits)
    count = await dataplane.count_vectors(key.client_id, known_name(name), body.filter)
    return json_response({"count": count})


@router.post(
    "/{name}/update",
    response_model=UpdateResponse,
    description="Metadata only: fields in `set` are merged, fields in `unset` removed. "
    "The result must stay within the metadata limits. Durable (fsynced) before the "
    "response; all or nothing per request.",
)
async def update_metadata(
    name: CollectionName, body: UpdateRequest, key: WriteKey, dataplane: DataPlaneDep
) -> Response:
    """Change the metadata of vectors by id or by filter, without re-sending vectors."""
    limit = dataplane.limits.max_ids_per_request
    if body.ids is not None and len(body.ids) > limit:
        raise PayloadTooLarge(f"at most {limit} ids per request; got {len(body.ids)}")
    check_filter_bounds(body.filter, dataplane.limits)
    updated = await dataplane.update_metadata(
        key.client_id,
        known_name(name),
        body.ids,
        body.filter,
        dict(body.set) if body.set is not None else None,
        body.unset,
    )
    return json_response({"updated": updated})
