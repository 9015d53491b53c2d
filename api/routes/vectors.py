"""Vectors in a collection: upsert, query, fetch, delete."""

from __future__ import annotations

import base64
import binascii
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
from api.routing import OrjsonRoute, json_response
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
from coordinator.dataplane import Limits

router = APIRouter(prefix="/v1/collections", tags=["vectors"], route_class=OrjsonRoute)
# Also served by the lean path (api/lean_query.py); this route stays the reference.
QUERY_PATH = "/v1/collections/{name}/query"


def _matrix(rows: list[list[float]] | np.ndarray) -> np.ndarray:
    """Rows of floats (or a float32 matrix already) as one float32 matrix; ragged rows are a 422."""
    width = len(rows[0]) if len(rows) else 0
    if width == 0 or any(len(r) != width for r in rows):
        raise Invalid("all vectors must have the same, non-zero number of values")
    matrix = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise Invalid("values must be finite (no NaN or Infinity, and within float32 range)")
    return matrix


def _decode_b64(ids: list[str], payload: str) -> np.ndarray:
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("values_b64 is not valid base64") from None
    if len(raw) % 4:
        raise BadRequest("values_b64 must hold little-endian float32 values (4 bytes each)")
    floats = len(raw) // 4
    if not ids or floats == 0 or floats % len(ids):
        raise Invalid(
            f"values_b64 holds {floats} float32 values, not a multiple of "
            f"len(ids)={len(ids)}: its length must be len(ids) x dimension x 4 bytes"
        )
    matrix = np.frombuffer(raw, dtype="<f4").reshape(len(ids), floats // len(ids))
    if not np.isfinite(matrix).all():
        raise Invalid("values must be finite (no NaN or Infinity)")
    return matrix.astype(np.float32, copy=False)


def _check_metadata(metadata: list[dict[str, Any] | None], limits: Limits) -> None:
    for i, meta in enumerate(metadata):
        if meta is not None and len(orjson.dumps(meta)) > limits.max_metadata_bytes:
            raise Invalid(
                f"metadata of vector {i} is over {limits.max_metadata_bytes} bytes of JSON"
            )


def _check_count(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise PayloadTooLarge(f"at most {limit} {what} per request; got {count}")


@router.post("/{name}/upsert", response_model=UpsertResponse)
async def upsert(
    name: CollectionName, body: UpsertRequest, key: WriteKey, dataplane: DataPlaneDep
) -> Response:
    """Insert or replace vectors; durable (fsynced) before the response."""
    limits = dataplane.limits
    if body.vectors is not None:
        _check_count(len(body.vectors), limits.max_upsert_vectors, "vectors")
        if not body.vectors:
            raise Invalid("'vectors' must not be empty")
        ids = [v.id for v in body.vectors]
        matrix = _matrix([v.values for v in body.vectors])
        metadata: list[dict[str, Any] | None] = [
            dict(v.metadata) if v.metadata is not None else None for v in body.vectors
        ]
    else:
        assert body.ids is not None and body.values_b64 is not None
        _check_count(len(body.ids), limits.max_upsert_vectors, "vectors")
        ids = body.ids
        matrix = _decode_b64(ids, body.values_b64)
        metadata = [dict(m) if m else None for m in body.metadata or [None] * len(ids)]
    if matrix.shape[1] > limits.max_dimension:
        raise Invalid(f"dimension must be at most {limits.max_dimension}")
    _check_metadata(metadata, limits)
    count = await dataplane.upsert(
        key.client_id,
        known_name(name),
        ids,
        matrix,
        metadata,
        max_vectors=tier_limits(key).max_vectors,
    )
    return json_response({"upserted": count})


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
    vectors = {vid: {"values": v.values, "metadata": v.metadata or {}} for vid, v in found.items()}
    return json_response({"vectors": vectors})


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
