"""One function per data operation: check the arguments, call the tenant store, shape the reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.filter_pieces import KEY as PIECES_KEY
from workers.filter_pieces import PieceError, join_filter
from workers.metadata_filter import FilterError, Predicate, compile_filter
from workers.metadata_patch import PatchError, check_patch
from workers.protocol import ErrorCode, Frame, Op
from workers.query_answer import RENDER_FORMS, render_format, rendered_reply
from workers.read_write_lock import WouldBlock
from workers.tenant_store import TenantStore
from workers.work_budget import WorkBudget, unbounded

Result = tuple[dict[str, Any], dict[str, np.ndarray]]
Handler = Callable[[TenantStore, Frame], Result]

MAX_ID_BYTES = 256
MAX_LIST_LIMIT = 1000


def create_collection(store: TenantStore, frame: Frame) -> Result:
    """CREATE_COLLECTION {collection, dimension, metric, index, hnsw?, max_collections?}."""
    spec = parse_collection_spec(frame.header)
    limit = _limit(frame.header, "max_collections")
    return {"collection": store.create_collection(spec, limit)}, {}


def list_collections(store: TenantStore, frame: Frame) -> Result:
    """LIST_COLLECTIONS {} -> {collections} sorted by name."""
    return {"collections": store.list_collections()}, {}


def get_collection(store: TenantStore, frame: Frame) -> Result:
    """GET_COLLECTION {collection} -> {collection, unindexed}: its INFO, and how many of
    its vectors wait to be inserted into its graph."""
    loaded = store.collection(frame.header.get("collection", ""))
    return {"collection": loaded.info(), "unindexed": loaded.unindexed}, {}


def delete_collection(store: TenantStore, frame: Frame) -> Result:
    """DELETE_COLLECTION {collection} -> {files}: the removed files and their SHA-256."""
    return {"files": store.delete_collection(frame.header.get("collection", ""))}, {}


def reseal(store: TenantStore, frame: Frame) -> Result:
    """RESEAL {} -> {collections}: every collection now under the current data key."""
    return {"collections": store.reseal_all()}, {}


def upsert(store: TenantStore, frame: Frame) -> Result:
    """UPSERT {collection, ids, metadata, max_vectors?} + vectors (n, d) -> {upserted}."""
    ids = _ids(frame.header.get("ids"))
    metadata = _metadata(frame.header.get("metadata"), len(ids))
    vectors = _array(frame, "vectors")
    limit = _limit(frame.header, "max_vectors")
    name = frame.header.get("collection", "")
    return {"upserted": store.upsert(name, ids, metadata, vectors, limit)}, {}


def query_options(header: dict[str, Any]) -> tuple[int | None, bool, str | None, bool]:
    """A QUERY frame's ``ef_search``, ``include_values``, ``render`` and binary answer flag,
    checked (StoreError INVALID)."""
    ef_search = header.get("ef_search")
    if ef_search is not None and (
        not isinstance(ef_search, int) or isinstance(ef_search, bool) or ef_search < 1
    ):
        raise StoreError(ErrorCode.INVALID, "ef_search must be a positive integer")
    include_values = _flag(header, "include_values")
    render = header.get("render")
    if render is not None and render not in RENDER_FORMS:
        raise StoreError(ErrorCode.INVALID, "render must be 'single', 'batch' or null")
    return ef_search, include_values, render, _render_format(header)


def query(
    store: TenantStore, frame: Frame, wait: bool = True, budget: WorkBudget | None = None
) -> Result:
    """QUERY {collection, top_k, include_*, filter, ef_search} + queries -> {results} (+ values).

    ``wait=False`` answers only a quick query of a loaded collection without waiting
    for any lock; anything else raises WouldBlock, to be answered in a thread.
    ``budget`` bounds the work and counts its cost.
    """
    header = frame.header
    budget = budget or unbounded()
    loaded = None if wait else store.loaded_collection(header.get("collection", ""))
    if not wait and (loaded is None or header.get("filter")):
        raise WouldBlock  # before any parsing: the thread parses the frame once
    top_k = header.get("top_k")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise StoreError(ErrorCode.INVALID, "top_k must be a positive integer")
    predicate = _filter(_query_filter(frame), allow_empty=True, budget=budget)
    ef_search, include_values, render, binary = query_options(header)
    queries = _array(frame, "queries")
    if loaded is None:
        collection = store.collection(header.get("collection", ""))
    elif predicate is None and loaded.quick_to_search(len(queries), top_k, ef_search):
        collection = loaded
    else:
        raise WouldBlock
    results, values = collection.query(
        queries,
        top_k,
        _flag(header, "include_metadata"),
        include_values,
        predicate,
        ef_search,
        wait,
        budget,
    )
    if render is not None:
        return rendered_reply(results, values, render, binary)
    return {"results": results}, ({"values": values} if values is not None else {})


def fetch(store: TenantStore, frame: Frame) -> Result:
    """FETCH {collection, ids} -> {ids, metadata} + vectors (m, d)."""
    collection = store.collection(frame.header.get("collection", ""))
    found, metadata, vectors = collection.fetch(_ids(frame.header.get("ids")))
    return {"ids": found, "metadata": metadata}, {"vectors": vectors}


def delete(store: TenantStore, frame: Frame, budget: WorkBudget | None = None) -> Result:
    """DELETE {collection, ids} or {collection, filter} -> {deleted}."""
    header = frame.header
    budget = budget or unbounded()
    if header.get("filter") is not None:
        if header.get("ids") is not None:
            raise StoreError(ErrorCode.INVALID, "send either ids or filter, not both")
        predicate = _filter(header["filter"], allow_empty=False, budget=budget)
        assert predicate is not None
        collection = store.collection(header.get("collection", ""))
        return {"deleted": collection.delete_where(predicate, budget)}, {}
    ids = _ids(header.get("ids"))
    collection = store.collection(header.get("collection", ""))
    return {"deleted": collection.delete(ids)}, {}


def list_vectors(store: TenantStore, frame: Frame, budget: WorkBudget | None = None) -> Result:
    """LIST_VECTORS {collection, after, limit, filter?, include_*} -> {ids, metadata?, more}."""
    header = frame.header
    budget = budget or unbounded()
    after = header.get("after")
    if after is not None and not isinstance(after, str):
        raise StoreError(ErrorCode.INVALID, "after must be a string or null")
    limit = header.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise StoreError(ErrorCode.INVALID, f"limit must be an integer from 1 to {MAX_LIST_LIMIT}")
    predicate = _filter(header.get("filter"), allow_empty=True, budget=budget)
    include_metadata = _flag(header, "include_metadata")
    include_values = _flag(header, "include_values")
    collection = store.collection(header.get("collection", ""))
    ids, metadata, values, more = collection.list_page(
        after, limit, predicate, include_metadata, include_values, budget
    )
    result: dict[str, Any] = {"ids": ids, "more": more}
    if metadata is not None:
        result["metadata"] = metadata
    return result, ({"values": values} if values is not None else {})


def count_vectors(store: TenantStore, frame: Frame, budget: WorkBudget | None = None) -> Result:
    """COUNT_VECTORS {collection, filter?} -> {count}."""
    budget = budget or unbounded()
    predicate = _filter(frame.header.get("filter"), allow_empty=True, budget=budget)
    collection = store.collection(frame.header.get("collection", ""))
    return {"count": collection.count(predicate, budget)}, {}


def update_metadata(store: TenantStore, frame: Frame, budget: WorkBudget | None = None) -> Result:
    """UPDATE_METADATA {collection, ids | filter, set?, unset?, max_metadata_bytes?}."""
    header = frame.header
    budget = budget or unbounded()
    ids: list[str] | None = None
    predicate: Predicate | None = None
    if header.get("filter") is not None:
        if header.get("ids") is not None:
            raise StoreError(ErrorCode.INVALID, "send either ids or filter, not both")
        # {} updates every vector
        predicate = _filter(header["filter"], allow_empty=True, budget=budget)
    else:
        ids = _ids(header.get("ids"))
    max_bytes = _limit(header, "max_metadata_bytes")
    try:
        fields, unset = check_patch(header.get("set"), header.get("unset"))
        collection = store.collection(header.get("collection", ""))
        updated = collection.update_metadata(ids, predicate, fields, unset, max_bytes, budget)
    except PatchError as exc:
        raise StoreError(ErrorCode.INVALID, str(exc)) from exc
    return {"updated": updated}, {}


def usage(store: TenantStore, frame: Frame) -> Result:
    """USAGE {} -> {collections, vectors, bytes}."""
    return store.usage(), {}


BudgetedHandler = Callable[..., Result]

# Operations whose work grows with the data or the filter: they take the request's budget.
BUDGETED: dict[str, BudgetedHandler] = {
    Op.QUERY: query,
    Op.DELETE: delete,
    Op.LIST_VECTORS: list_vectors,
    Op.COUNT_VECTORS: count_vectors,
    Op.UPDATE_METADATA: update_metadata,
}

HANDLERS: dict[str, Handler] = {
    Op.CREATE_COLLECTION: create_collection,
    Op.LIST_COLLECTIONS: list_collections,
    Op.GET_COLLECTION: get_collection,
    Op.DELETE_COLLECTION: delete_collection,
    Op.UPSERT: upsert,
    Op.QUERY: query,
    Op.FETCH: fetch,
    Op.DELETE: delete,
    Op.USAGE: usage,
    Op.LIST_VECTORS: list_vectors,
    Op.COUNT_VECTORS: count_vectors,
    Op.UPDATE_METADATA: update_metadata,
    Op.RESEAL: reseal,
}


def _query_filter(frame: Frame) -> Any:
    """The query's filter, its long lists put back from the frame's pieces if it came
    with any (workers/filter_pieces.py): here, in the request's thread, a piece at a time."""
    header = frame.header
    places = header.get(PIECES_KEY)
    if places is None:
        return header.get("filter")
    try:
        return join_filter(header.get("filter"), places, frame.arrays)
    except PieceError as exc:
        raise StoreError(ErrorCode.INVALID, f"invalid filter pieces: {exc}") from exc


def _filter(value: Any, allow_empty: bool, budget: WorkBudget) -> Predicate | None:
    """Compile a filter before any data is touched; INVALID with the reason if malformed.

    Its operands count towards the request's cost (sets are built from them)."""
    if value is None:
        return None
    if not allow_empty and value == {}:
        raise StoreError(
            ErrorCode.INVALID,
            "an empty filter would delete every vector; delete the collection instead",
        )
    try:
        predicate, operands = compile_filter(value)
    except FilterError as exc:
        raise StoreError(ErrorCode.INVALID, f"invalid filter: {exc}") from exc
    budget.spend(operands)
    return None if value == {} else predicate


def _limit(header: dict[str, Any], name: str) -> int | None:
    value = header.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreError(ErrorCode.INVALID, f"{name} must be a non-negative integer or null")
    return value


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise StoreError(ErrorCode.INVALID, "ids must be a list of strings")
    for vector_id in value:
        if not isinstance(vector_id, str) or not 1 <= len(vector_id.encode()) <= MAX_ID_BYTES:
            raise StoreError(
                ErrorCode.INVALID, f"each id must be a string of 1-{MAX_ID_BYTES} UTF-8 bytes"
            )
    return value


def _metadata(value: Any, count: int) -> list[dict[str, Any] | None]:
    if value is None:
        return [None] * count
    if not isinstance(value, list) or len(value) != count:
        raise StoreError(ErrorCode.INVALID, "metadata must be a list as long as ids")
    if not all(m is None or isinstance(m, dict) for m in value):
        raise StoreError(ErrorCode.INVALID, "each metadata entry must be an object or null")
    return value


_LITTLE_F4 = np.dtype("<f4")


def _array(frame: Frame, name: str) -> np.ndarray:
    array = frame.arrays.get(name)
    if array is None:
        raise StoreError(ErrorCode.INVALID, f"missing array '{name}'")
    if array.dtype != _LITTLE_F4 or array.ndim != 2:
        raise StoreError(ErrorCode.INVALID, f"array '{name}' must be little-endian float32 (n, d)")
    return array


def _render_format(header: dict[str, Any]) -> bool:
    try:
        return render_format(header.get("render_format"))
    except ValueError as exc:
        raise StoreError(ErrorCode.INVALID, str(exc)) from None


def _flag(header: dict[str, Any], name: str) -> bool:
    value = header.get(name, False)
    if not isinstance(value, bool):
        raise StoreError(ErrorCode.INVALID, f"{name} must be a boolean")
    return value
