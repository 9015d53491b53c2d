"""An upsert body's rows (ids, a float32 matrix, metadata), checked as the API checks them.

Light on purpose (numpy, orjson and the pydantic models of api/schemas.py, no web
framework): the upsert route (api/routes/vectors.py) turns a refusal here into the
API's error, and the query desk's helper process (api/query_desk.py) runs the same
code on a large JSON upsert body, off the coordinator's event loop.

A 1,000 x 384 upsert as JSON is about 7.6 MB: parsing it, validating it and building
its matrix took 40-80 ms of the event loop, in C calls that hold the interpreter lock,
while every other client's request on that coordinator process waited. The helper
sends back only what the worker needs; a body it cannot prove valid goes to the
route, which answers the error (the same error, the same bytes).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from api.schemas import UpsertRequest

BAD_REQUEST, TOO_LARGE, INVALID = 400, 413, 422

Rows = tuple[list[str], np.ndarray, list[dict[str, Any] | None]]


class RowsRefused(ValueError):
    """A request the API refuses: the HTTP status of the error and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_F32, _F64 = np.dtype("float32"), np.dtype("float64")


def all_finite(matrix: np.ndarray) -> bool:
    """No value of the float32 ``matrix`` is NaN or infinite (True when it is empty).

    Finite float32 values cannot overflow a float64 sum, so the sum is finite exactly
    when every value is: one reduction, where ``np.isfinite(...).all()`` first builds a
    boolean array the size of the data (the worker checks the same way,
    workers/collection.py)."""
    return math.isfinite(np.add.reduce(matrix, axis=None, dtype=_F64))


def check_count(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise RowsRefused(TOO_LARGE, f"at most {limit} {what} per request; got {count}")


def matrix_of(rows: list[list[float]] | np.ndarray) -> np.ndarray:
    """Rows of floats (or a float32 matrix already) as one float32 matrix; ragged rows
    are refused."""
    if type(rows) is np.ndarray and rows.ndim == 2 and rows.dtype == _F32:
        # a binary query's matrix (api/binary_query.py): rows of one width by shape
        if rows.size == 0:
            raise RowsRefused(INVALID, "all vectors must have the same, non-zero number of values")
        matrix = rows
    else:
        width = len(rows[0]) if len(rows) else 0
        if width == 0 or any(len(r) != width for r in rows):
            raise RowsRefused(INVALID, "all vectors must have the same, non-zero number of values")
        matrix = np.asarray(rows, dtype=np.float32)
    if not all_finite(matrix):
        raise RowsRefused(
            INVALID, "values must be finite (no NaN or Infinity, and within float32 range)"
        )
    return matrix


def b64_bytes(payload: str) -> bytes:
    """``base64.b64decode(payload, validate=True)``, its usual case in one C call.

    That call checks the alphabet with a regular expression before decoding: 4 ms of
    a 2 MB packed 1,000 x 384 upsert (on the event loop), against 1 ms for binascii's
    strict mode, which accepts a subset of what it does (canonical base64) and decodes
    it to the same bytes. Anything strict mode refuses gets the call's own verdict.
    """
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        return base64.b64decode(payload, validate=True)


def decode_b64(ids: list[str], payload: str) -> np.ndarray:
    try:
        raw = b64_bytes(payload)
    except (binascii.Error, ValueError):
        raise RowsRefused(BAD_REQUEST, "values_b64 is not valid base64") from None
    if len(raw) % 4:
        raise RowsRefused(
            BAD_REQUEST, "values_b64 must hold little-endian float32 values (4 bytes each)"
        )
    floats = len(raw) // 4
    if not ids or floats == 0 or floats % len(ids):
        raise RowsRefused(
            INVALID,
            f"values_b64 holds {floats} float32 values, not a multiple of "
            f"len(ids)={len(ids)}: its length must be len(ids) x dimension x 4 bytes",
        )
    return finite_rows(np.frombuffer(raw, dtype="<f4").reshape(len(ids), floats // len(ids)))


def finite_rows(matrix: np.ndarray) -> np.ndarray:
    """A little-endian float32 matrix as float32, refused if a value is NaN or Infinity."""
    if not all_finite(matrix):
        raise RowsRefused(INVALID, "values must be finite (no NaN or Infinity)")
    return matrix.astype(np.float32, copy=False)


def packed_metadata(body: UpsertRequest, count: int) -> list[dict[str, Any] | None]:
    """The ``metadata`` list of a packed body (``ids`` with their values elsewhere), one
    entry per id: an empty or absent entry is None."""
    return [dict(m) if m else None for m in body.metadata or [None] * count]


def check_metadata(metadata: list[dict[str, Any] | None], max_bytes: int) -> None:
    for i, meta in enumerate(metadata):
        if meta is not None and len(orjson.dumps(meta)) > max_bytes:
            raise RowsRefused(INVALID, f"metadata of vector {i} is over {max_bytes} bytes of JSON")


def upsert_rows(
    body: UpsertRequest, max_vectors: int, max_dimension: int, max_metadata_bytes: int
) -> Rows:
    """The rows of a schema-valid upsert body, checked in the order the API checks them."""
    if body.vectors is not None:
        check_count(len(body.vectors), max_vectors, "vectors")
        if not body.vectors:
            raise RowsRefused(INVALID, "'vectors' must not be empty")
        ids = [v.id for v in body.vectors]
        matrix = matrix_of([v.values for v in body.vectors])
        metadata: list[dict[str, Any] | None] = [
            dict(v.metadata) if v.metadata is not None else None for v in body.vectors
        ]
    else:
        assert body.ids is not None and body.values_b64 is not None
        check_count(len(body.ids), max_vectors, "vectors")
        ids = body.ids
        matrix = decode_b64(ids, body.values_b64)
        metadata = packed_metadata(body, len(ids))
    return checked_rows(ids, matrix, metadata, max_dimension, max_metadata_bytes)


def checked_rows(
    ids: list[str],
    matrix: np.ndarray,
    metadata: list[dict[str, Any] | None],
    max_dimension: int,
    max_metadata_bytes: int,
) -> Rows:
    """The rows, once their dimension and each metadata's size are within the limits."""
    if matrix.shape[1] > max_dimension:
        raise RowsRefused(INVALID, f"dimension must be at most {max_dimension}")
    check_metadata(metadata, max_metadata_bytes)
    return ids, matrix, metadata


def parse_upsert(
    body: bytes, max_vectors: int, max_dimension: int, max_metadata_bytes: int
) -> Rows | None:
    """The rows of a JSON upsert ``body``; None when the route must answer (anything it
    would refuse). Runs in the query desk's process.

    The same steps as the route: the body as strict JSON (orjson, as
    ``api.routing.strict_json`` parses a body it accepts), validated by the body's
    model, then ``upsert_rows``.
    """
    try:
        doc = orjson.loads(body)
        rows = upsert_rows(
            UpsertRequest.model_validate(doc), max_vectors, max_dimension, max_metadata_bytes
        )
    except (orjson.JSONDecodeError, ValidationError, RowsRefused):
        return None
    return rows
