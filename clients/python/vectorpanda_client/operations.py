"""Each client operation as a plan of HTTP calls: request building and response parsing.

Shared by ``Client`` and ``AsyncClient``; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import numpy as np

from vectorpanda_client.binary import (
    ACCEPT,
    CONTENT_TYPE,
    decode_results,
    encode_query,
    encode_upsert,
    query_prefix,
)
from vectorpanda_client.errors import InvalidError
from vectorpanda_client.exchange import Answer, Call, Operation
from vectorpanda_client.models import CollectionInfo, FetchedVector, Indexing, QueryResult, Usage

# The server's per-request limits (shared/API.md defaults).
MAX_UPSERT_VECTORS = 1000
MAX_QUERY_VECTORS = 100
MAX_IDS_PER_REQUEST = 1000

Metadata = dict[str, Any]
_FLOAT32 = np.dtype("<f4")
_FLOAT64 = np.dtype("float64")


@lru_cache(maxsize=256)
def collection_path(name: str, action: str = "") -> str:
    path = f"/v1/collections/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


def as_matrix(vectors: Any, what: str = "vectors") -> np.ndarray:
    """Vectors as a C-contiguous little-endian float32 matrix, checked to be finite."""
    if (
        type(vectors) is np.ndarray
        and vectors.dtype == _FLOAT32
        and vectors.ndim >= 1
        and vectors.flags.c_contiguous
    ):
        matrix = vectors  # already what is sent: no conversion
    else:
        matrix = np.ascontiguousarray(np.asarray(vectors, dtype="<f4"))
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise InvalidError(f"{what} must be a non-empty 2-D array (rows x dimension)")
    # Finite float32 values cannot overflow a float64 sum, so the sum is finite exactly when
    # every value is: one buffered reduction, where np.isfinite(...).all() first builds a
    # boolean array the size of the data (38 MB for 100,000 x 384 in one upsert call).
    if not math.isfinite(np.add.reduce(matrix, axis=None, dtype=_FLOAT64)):
        raise InvalidError(f"{what} must be finite (no NaN or Infinity)")
    return matrix


def chunks(count: int, size: int) -> range:
    return range(0, count, max(1, size))


def create_collection(
    name: str, dimension: int, metric: str, index: str, hnsw: dict[str, int] | None
) -> Operation[CollectionInfo]:
    body: dict[str, Any] = {"name": name, "dimension": dimension, "metric": metric, "index": index}
    if hnsw is not None:
        body["hnsw"] = hnsw
    answer = yield Call("POST", "/v1/collections", body, idempotent=False)
    return CollectionInfo.from_json(answer.json())


def list_collections() -> Operation[list[CollectionInfo]]:
    answer = yield Call("GET", "/v1/collections")
    return [CollectionInfo.from_json(c) for c in answer.json()["collections"]]


def describe_collection(name: str) -> Operation[CollectionInfo]:
    answer = yield Call("GET", collection_path(name))
    return CollectionInfo.from_json(answer.json())


def collection_indexing(name: str) -> Operation[Indexing]:
    answer = yield Call("GET", collection_path(name, "indexing"))
    return Indexing.from_json(answer.json())


def delete_collection(name: str) -> Operation[None]:
    yield Call("DELETE", collection_path(name), idempotent=False)


def usage() -> Operation[Usage]:
    answer = yield Call("GET", "/v1/usage")
    return Usage.from_json(answer.json())


def upsert(
    name: str,
    ids: Sequence[str],
    vectors: Any,
    metadata: Sequence[Metadata | None] | None,
    batch_size: int = MAX_UPSERT_VECTORS,
) -> Operation[int]:
    """Raw float32 (the binary upsert format) in batches of at most ``batch_size`` vectors."""
    ids = [str(i) for i in ids]
    matrix = as_matrix(vectors)
    if len(ids) != matrix.shape[0]:
        raise InvalidError(f"got {len(ids)} ids for {matrix.shape[0]} vectors")
    if metadata is not None and len(metadata) != len(ids):
        raise InvalidError(f"got {len(metadata)} metadata entries for {len(ids)} ids")
    size = min(batch_size, MAX_UPSERT_VECTORS)
    upserted = 0
    for start in chunks(len(ids), size):
        stop = start + size
        rows = None if metadata is None else list(metadata[start:stop])
        body = encode_upsert(ids[start:stop], matrix[start:stop], rows)
        answer = yield Call(
            "POST", collection_path(name, "upsert"), body, content_type=CONTENT_TYPE
        )
        upserted += int(answer.json()["upserted"])
    return upserted


def query(
    name: str,
    vector_or_matrix: Any,
    top_k: int,
    filter: Metadata | None,
    include_metadata: bool,
    include_values: bool,
    ef_search: int | None,
) -> Operation[QueryResult | list[QueryResult]]:
    """One vector answers a ``QueryResult``; a matrix answers one per row."""
    single = np.ndim(vector_or_matrix) == 1
    matrix = as_matrix(vector_or_matrix, "query vectors")
    options = query_options(top_k, filter, include_metadata, include_values, ef_search)
    path = collection_path(name, "query")
    # The vectors go as raw float32 and the answer comes back binary when the server
    # can (vectorpanda_client/binary.py).
    if single:
        body = encode_query(matrix[:1], True, options)
        answer = yield Call("POST", path, body, content_type=CONTENT_TYPE, accept=ACCEPT)
        return _query_results(answer, True)[0]
    results: list[QueryResult] = []
    for start in chunks(len(matrix), MAX_QUERY_VECTORS):
        body = encode_query(matrix[start : start + MAX_QUERY_VECTORS], False, options)
        answer = yield Call("POST", path, body, content_type=CONTENT_TYPE, accept=ACCEPT)
        results.extend(_query_results(answer, False))
    return results


def query_options(
    top_k: int,
    filter: Metadata | None,
    include_metadata: bool,
    include_values: bool,
    ef_search: int | None,
) -> dict[str, Any]:
    """A query's options as its body carries them (besides the vectors and their shape)."""
    options: dict[str, Any] = {"top_k": top_k}
    if filter is not None:
        options["filter"] = filter
    if include_metadata:
        options["include_metadata"] = True
    if include_values:
        options["include_values"] = True
    if ef_search is not None:
        options["ef_search"] = ef_search
    return options


def single_query_prefix(
    top_k: int, include_metadata: bool, ef_search: int | None, dimension: int
) -> bytes:
    """The body of a one-vector query without filter or values, up to the vector's
    float32 bytes: what ``query`` sends for it, less those bytes."""
    options = query_options(top_k, None, include_metadata, False, ef_search)
    return query_prefix(options, [dimension])


def single_query_result(answer: Answer) -> QueryResult:
    """The result of a one-vector query from its (successful) answer."""
    return _query_results(answer, True)[0]


def _query_results(answer: Answer, single: bool) -> list[QueryResult]:
    if answer.header("content-type").startswith(CONTENT_TYPE):
        return decode_results(answer.content)
    body = answer.json()
    return (
        [QueryResult.from_json(body)]
        if single
        else [QueryResult.from_json(r) for r in body["results"]]
    )


def fetch(name: str, ids: Sequence[str]) -> Operation[dict[str, FetchedVector]]:
    """Vectors by id; missing ids are absent from the answer."""
    ids = [str(i) for i in ids]
    found: dict[str, FetchedVector] = {}
    for start in chunks(len(ids), MAX_IDS_PER_REQUEST):
        body = {"ids": ids[start : start + MAX_IDS_PER_REQUEST]}
        answer = yield Call("POST", collection_path(name, "fetch"), body)
        for vid, v in answer.json()["vectors"].items():
            found[vid] = FetchedVector(
                values=np.asarray(v["values"], dtype=np.float32), metadata=v.get("metadata") or {}
            )
    return found


def delete(name: str, ids: Sequence[str] | None, filter: Metadata | None) -> Operation[int]:
    """Delete by ids (batched) or by a metadata filter; exactly one of the two."""
    if (ids is None) == (filter is None):
        raise InvalidError("pass either ids or filter to delete()")
    path = collection_path(name, "delete")
    if filter is not None:
        answer = yield Call("POST", path, {"filter": filter})
        return int(answer.json()["deleted"])
    assert ids is not None
    id_list = [str(i) for i in ids]
    deleted = 0
    for start in chunks(len(id_list), MAX_IDS_PER_REQUEST):
        answer = yield Call("POST", path, {"ids": id_list[start : start + MAX_IDS_PER_REQUEST]})
        deleted += int(answer.json()["deleted"])
    return deleted
