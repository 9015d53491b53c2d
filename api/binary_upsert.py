"""The binary upsert format: the vectors as raw float32, not as JSON numbers or base64.

``POST /v1/collections/{name}/upsert`` with ``Content-Type: application/x-vectorpanda``::

    b"VPU1" | u32 little-endian length of P | P | float32 little-endian values

P is a JSON object: ``ids`` and the optional ``metadata`` of the packed JSON body (same
rules, same 422 messages) plus ``shape``, ``[n, d]`` with n the number of ids; exactly
n x d values follow P, row after row. The answer is the JSON body's, ``{"upserted": n}``.
A malformed frame is a 400; values that do not fill the shape, or are NaN or Infinity,
are a 422.

Why: a 1,000 x 384 packed JSON upsert cost the coordinator's event loop about 38 ms
(measured with py-spy during a 100k import: base64 decoding a quarter of it, the 2 MB
JSON parse and the framework's body handling most of the rest), on the cores the
graph build of the same import needs. This frame is parsed in well under a
millisecond: the vectors are used where they lie in the body.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.binary_query import read_frame
from api.errors import describe_validation
from api.schemas import UpsertRequest
from api.upsert_rows import (
    INVALID,
    Rows,
    RowsRefused,
    check_count,
    checked_rows,
    finite_rows,
    packed_metadata,
)

MAGIC = b"VPU1"
_FIELDS = frozenset({"ids", "metadata", "shape"})


def parse_binary_upsert(
    body: bytes, max_vectors: int, max_dimension: int, max_metadata_bytes: int
) -> Rows:
    """The rows of a binary upsert, checked in the JSON body's order; BinaryQueryError
    (400) for a malformed frame, RowsRefused for rows the API refuses."""
    doc, payload = read_frame(body, MAGIC, "upsert")
    unknown = sorted(doc.keys() - _FIELDS)
    if unknown:
        raise RowsRefused(
            INVALID, f"P takes ids, metadata and shape only; got {', '.join(unknown)}"
        )
    if "ids" not in doc:
        raise RowsRefused(INVALID, "P must list the vectors' ids")
    shape = doc.get("shape")
    # The JSON body's model checks ids and metadata (its placeholder values_b64 is unused).
    fields: dict[str, Any] = {"ids": doc["ids"], "values_b64": ""}
    if "metadata" in doc:
        fields["metadata"] = doc["metadata"]
    try:
        request = UpsertRequest.model_validate(fields)
    except ValidationError as exc:
        _, _, message = describe_validation(RequestValidationError(exc.errors()))
        raise RowsRefused(INVALID, message) from None
    ids = request.ids
    assert ids is not None
    check_count(len(ids), max_vectors, "vectors")
    if (
        type(shape) is not list
        or len(shape) != 2
        or not all(type(n) is int and n > 0 for n in shape)
        or shape[0] != len(ids)
    ):
        raise RowsRefused(INVALID, f"shape must be [n, d] with n = len(ids) = {len(ids)}")
    if len(payload) != 4 * shape[0] * shape[1]:
        raise RowsRefused(
            INVALID,
            f"shape {shape} needs {4 * shape[0] * shape[1]} bytes of float32 values; "
            f"got {len(payload)}",
        )
    matrix = finite_rows(np.frombuffer(payload, dtype="<f4").reshape(shape[0], shape[1]))
    metadata = packed_metadata(request, len(ids))
    return checked_rows(ids, matrix, metadata, max_dimension, max_metadata_bytes)
