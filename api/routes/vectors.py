"""Vectors in a collection: upsert, query, fetch, delete."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from api.deps import DataPlaneDep, ReadKey, WriteKey, tier_limits
from api.disconnect import unless_disconnected
from api.errors import BadRequest, Invalid, PayloadTooLarge
from api.filter_bounds import check_filter_bounds
from api.query_parse import CheckedFilter
from api.routes.collections import CollectionName, known_name
from api.routing import JSON_OPTIONS, OrjsonRoute, PartsResponse, json_response
from api.schemas import (
    BatchQueryResponse,
    DeleteRequest,
    DeleteResponse,
    FetchResponse,
    IdsRequest,
    QueryRequest,
    QueryResponse,
    UpsertRequest,
    UpsertResponse,
)
from api.upsert_rows import (
    BAD_REQUEST,
    INVALID,
    TOO_LARGE,
    Rows,
    RowsRefused,
    check_count,
    matrix_of,
    upsert_rows,
)
from coordinator.accounts.model import Principal
from coordinator.dataplane import DataPlane, FetchedVector, Limits

router = APIRouter(prefix="/v1/collections", tags=["vectors"], route_class=OrjsonRoute)
# Also served by the lean path (api/lean_query.py); this route stays the reference.
QUERY_PATH = "/v1/collections/{name}/query"
UPSERT_PATH = "/v1/collections/{name}/upsert"  # large JSON bodies: api/lean_upsert.py


_ERRORS: dict[int, type[BadRequest | PayloadTooLarge | Invalid]] = {
    BAD_REQUEST: BadRequest,
    TOO_LARGE: PayloadTooLarge,
    INVALID: Invalid,
}


def api_error(refused: RowsRefused) -> BadRequest | PayloadTooLarge | Invalid:
    """The API's error for a refusal of api/upsert_rows.py (same status, same message)."""
    return _ERRORS[refused.status](refused.message)


def _matrix(rows: list[list[float]] | np.ndarray) -> np.ndarray:
    """Rows of floats (or a float32 matrix already) as one float32 matrix; ragged rows are a 422."""
    try:
        return matrix_of(rows)
    except RowsRefused as refused:
        raise api_error(refused) from None


def _check_count(count: int, limit: int, what: str) -> None:
    try:
        check_count(count, limit, what)
    except RowsRefused as refused:
        raise api_error(refused) from None


@router.post("/{name}/upsert", response_model=UpsertResponse)
async def upsert(
    name: CollectionName, body: UpsertRequest, key: WriteKey, dataplane: DataPlaneDep
) -> Response:
    """Insert or replace vectors; durable (fsynced) before the response."""
    limits = dataplane.limits
    try:
        ids, matrix, metadata = upsert_rows(
            body, limits.max_upsert_vectors, limits.max_dimension, limits.max_metadata_bytes
        )
    except RowsRefused as refused:
        raise api_error(refused) from None
    answer = await store_rows(dataplane, key, name, (ids, matrix, metadata))
    return Response(answer, media_type="application/json")


async def store_rows(dataplane: DataPlane, key: Principal, name: str, rows: Rows) -> bytes:
    """Upsert checked rows into the key's collection ``name``: the answer's bytes, or the
    API's error raised. The route's and the lean path's (api/lean_upsert.py) last step."""
    ids, matrix, metadata = rows
    count = await dataplane.upsert(
        key.client_id,
        known_name(name),
        ids,
        matrix,
        metadata,
        max_vectors=tier_limits(key).max_vectors,
    )
    return orjson.dumps({"upserted": count}, option=JSON_OPTIONS)


def query_matrix(
    name: str,
    rows: list[Any],
    top_k: int,
    filter: dict[str, Any] | CheckedFilter | None,
    limits: Limits,
) -> tuple[str, np.ndarray]:
    """The checks of a schema-valid query, in the order the API makes them: name and matrix.

    Shared by the route below and the lean path (api/lean_query.py), so both refuse alike.
    """
    if top_k > limits.max_top_k:
        raise Invalid(f"top_k must be between 1 and {limits.max_top_k}")
    _check_count(len(rows), limits.max_query_vectors, "query vectors")
    check_filter_bounds(filter, limits)
    return known_name(name), _matrix(rows)


@router.post(
    "/{name}/query",
    response_model=QueryResponse | BatchQueryResponse,
    description="`vector` answers `{matches}`; `vectors` answers `{results: [{matches}]}`.",
)
async def query(
    name: CollectionName,
    body: QueryRequest,
    key: ReadKey,
    dataplane: DataPlaneDep,
    request: Request,
) -> Response:
    """Nearest neighbours of one vector or a batch, best first."""
    rows = [body.vector] if body.vector is not None else body.vectors or []
    collection, matrix = query_matrix(name, rows, body.top_k, body.filter, dataplane.limits)
    answer = await unless_disconnected(
        request,
        dataplane.query_json(
            key.client_id,
            collection,
            matrix,
            body.top_k,
            include_metadata=body.include_metadata,
            include_values=body.include_values,
            filter=body.filter,
            ef_search=body.ef_search,
            single=body.vector is not None,
        ),
    )
    return Response(answer, media_type="application/json")


@router.post("/{name}/fetch", response_model=FetchResponse)
async def fetch(
    name: CollectionName, body: IdsRequest, key: ReadKey, dataplane: DataPlaneDep
) -> Response:
    """Vectors by id; missing ids are absent from the answer."""
    _check_count(len(body.ids), dataplane.limits.max_ids_per_request, "ids")
    found = await dataplane.fetch(key.client_id, known_name(name), body.ids)
    return PartsResponse(await fetch_answer(found))


# orjson encodes about 30 million floats a second here: the answer to a fetch of 1,000
# vectors of 4,096 took 120 ms in one call, during which every other request on this
# event loop waited. It is rendered in parts of about this many floats (about 0.15 ms
# each), and the loop takes a turn between parts; the bytes are the same. Measured with
# benchmarks.noisy_split --a-sends fetches (a client fetching 1,000 x 384 at concurrency
# 8): a quiet client's median went from 130 ms to 31 ms with parts of 32,768 floats, 13
# ms with 8,192, 9 ms with 4,096 and 7 ms with 2,048; the fetching client lost 0, 10, 10
# and 15 % of its answers a second.
FLOATS_PER_TURN = 4_096


async def fetch_answer(found: dict[str, FetchedVector]) -> list[bytes]:
    """``{"vectors": {id: {"values", "metadata"}}}`` as orjson renders it, in parts of
    about ``FLOATS_PER_TURN`` floats each (one orjson call per part), the event loop
    served between parts."""
    pieces: list[bytes] = []
    group: dict[str, dict[str, Any]] = {}
    floats = 0
    for vid, vector in found.items():
        group[vid] = {"values": vector.values, "metadata": vector.metadata or {}}
        floats += vector.values.size
        if floats >= FLOATS_PER_TURN:
            pieces.append(orjson.dumps(group, option=JSON_OPTIONS)[1:-1])  # without {}
            group, floats = {}, 0
            await asyncio.sleep(0)
    if group:
        pieces.append(orjson.dumps(group, option=JSON_OPTIONS)[1:-1])
    if not pieces:
        return [b'{"vectors":{}}']
    parts = [b'{"vectors":{' + pieces[0]] + [b"," + piece for piece in pieces[1:]]
    parts[-1] += b"}}"
    return parts


@router.post("/{name}/delete", response_model=DeleteResponse)
async def delete(
    name: CollectionName, body: DeleteRequest, key: WriteKey, dataplane: DataPlaneDep
) -> Response:
    """Delete vectors by id or by metadata filter (durable before the response)."""
    if body.ids is not None:
        _check_count(len(body.ids), dataplane.limits.max_ids_per_request, "ids")
    check_filter_bounds(body.filter, dataplane.limits)
    deleted = await dataplane.delete(key.client_id, known_name(name), body.ids, body.filter)
    return json_response({"deleted": deleted})
