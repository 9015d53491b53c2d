"""The binary query format: the query's vectors as raw float32, not as JSON numbers.

``POST /v1/collections/{name}/query`` with ``Content-Type: application/x-vectorpanda``::

    b"VPQ1" | u32 little-endian length of P | P | float32 little-endian values

P is a JSON object with the JSON body's fields except ``vector``/``vectors``
(``top_k``, ``filter``, ``include_metadata``, ``include_values``, ``ef_search``, same
defaults and rules) plus ``shape``: ``[d]`` for one vector (answered ``{matches}``)
or ``[n, d]`` for a batch (answered ``{results}``). The values follow P, row after
row; their number must be exactly the shape's. The answer is the same JSON as for
the JSON body. A malformed frame is a 400; fields that break the rules are the
same 422 as in a JSON body.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.errors import ApiError, BadRequest, Invalid, describe_validation
from api.query_parse import query_options
from api.schemas import QueryRequest

BINARY_TYPE = b"application/x-vectorpanda"
MAGIC = b"VPQ1"
_LEN = struct.Struct("<I")
_FIELDS = frozenset({"top_k", "filter", "include_metadata", "include_values", "ef_search", "shape"})


class BinaryQueryError(Exception):
    """A binary query the API refuses."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error

    def as_api_error(self) -> ApiError:
        return self.error


def _refuse(doc: dict[str, Any], rows: np.ndarray, single: bool) -> BinaryQueryError:
    """The 422 the JSON body with these fields would get (QueryRequest's own message)."""
    as_json = {k: v for k, v in doc.items() if k != "shape"}
    as_json["vector" if single else "vectors"] = rows[0].tolist() if single else rows.tolist()
    try:
        QueryRequest.model_validate(as_json)
    except ValidationError as exc:
        _, _, message = describe_validation(RequestValidationError(exc.errors()))
        return BinaryQueryError(Invalid(message))
    return BinaryQueryError(Invalid("The request is invalid."))


def read_frame(body: bytes, magic: bytes, what: str) -> tuple[dict[str, Any], memoryview]:
    """P (a JSON object) and the bytes after it of ``magic | u32 LE len(P) | P | ...``;
    BinaryQueryError (400) for a malformed frame. Shared with api/binary_upsert.py."""
    if len(body) < 8 or body[:4] != magic:
        raise BinaryQueryError(
            BadRequest(f"a binary {what} starts with {magic.decode()} and P's length")
        )
    (length,) = _LEN.unpack_from(body, 4)
    if 8 + length > len(body):
        raise BinaryQueryError(BadRequest(f"the binary {what} is shorter than its header says"))
    try:
        doc = orjson.loads(body[8 : 8 + length])
    except orjson.JSONDecodeError:
        raise BinaryQueryError(BadRequest(f"the binary {what}'s P is not valid JSON")) from None
    if type(doc) is not dict:
        raise BinaryQueryError(BadRequest(f"the binary {what}'s P must be a JSON object"))
    return doc, memoryview(body)[8 + length :]


def parse_binary_query(body: bytes) -> dict[str, Any]:
    """The query in ``body`` as api/lean_query.py's parse_json_query returns it."""
    doc, payload = read_frame(body, MAGIC, "query")
    shape = doc.get("shape")
    if (
        type(shape) is not list
        or len(shape) not in (1, 2)
        or not all(type(n) is int and n > 0 for n in shape)
    ):
        raise BinaryQueryError(Invalid("shape must be [d] or [n, d] with positive integers"))
    count = 1
    for n in shape:
        count *= n
    if len(payload) != 4 * count:
        raise BinaryQueryError(
            Invalid(f"shape {shape} needs {4 * count} bytes of float32 values; got {len(payload)}")
        )
    single = len(shape) == 1
    rows = np.frombuffer(payload, dtype="<f4").reshape(1 if single else shape[0], shape[-1])
    options = query_options(doc) if doc.keys() <= _FIELDS else None
    if options is None:
        raise _refuse(doc, rows, single)
    return {"rows": rows, "single": single, **options}
