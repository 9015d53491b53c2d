"""The coordinator <-> worker wire protocol.

Every WebSocket message is one binary frame:

    u32 little-endian header length | header (orjson object) | array payloads

The header is a JSON object. Its ``arrays`` entry lists the numpy arrays that
follow the header, in order, as ``[name, dtype, shape]``; each payload is the
array's C-order bytes. Vectors therefore travel as raw float32, never as JSON
floats.

Header fields common to all frames:

* ``op``     -- the operation (see ``Op``) or ``"reply"``.
* ``rid``    -- request id chosen by the sender of a request; a reply echoes it.

Data operations also carry ``tenant`` (the client id) and ``epoch`` (the
ownership epoch the coordinator assigned). A worker refuses a data frame whose
tenant it does not own at exactly that epoch.

Additions (issue 4; all backwards compatible, no new ops or fields required):

* CREATE_COLLECTION accepts ``index: "hnsw"`` with ``hnsw: {m, ef_construction}``
  (either may be null/absent: defaults 32 and 200; limits 4-128 and 8-2000), and
  ``max_collections`` (int or null): QUOTA_EXCEEDED if the tenant already has that many.
  INFO of an hnsw collection carries ``hnsw: {m, ef_construction}``.
* UPSERT ``max_vectors`` (int or null): QUOTA_EXCEEDED, nothing written, if the tenant's
  total live vectors after the write would pass it (replaced ids do not count). An hnsw
  collection whose fresh (not yet graph-indexed) buffer is full answers BUSY.
* QUERY ``filter`` (Mongo-style, see ``workers.metadata_filter``; ``{}`` matches all) and
  ``ef_search`` (positive int or null: default 64). A malformed filter is INVALID with a
  message naming the field, checked before any data is loaded.
* DELETE ``{collection, filter}`` deletes every matching vector -> ``{deleted}``; an empty
  filter is INVALID (deleting a whole collection has its own op).

Cost control (issue 12; backwards compatible):

* Every data frame may carry ``deadline_ms``: how long the coordinator will still wait
  for the reply (relative, so the two clocks need not agree). The worker stops a query's
  or filtered delete's work between chunks once it passes (default 60 s if absent).
* CANCEL ``{cancel: rid}`` (coordinator -> worker, no reply): the coordinator answered
  the client without waiting for request ``rid`` (deadline, client gone); the worker
  stops its work at the next chunk, or skips it if it has not started.
* A reply to QUERY or DELETE may carry ``cost``: rows examined (filter evaluation, plus
  rows compared per query vector) plus the filter's ``$in``/``$nin`` operands; the
  coordinator charges it to the client's rate limit.

Encryption at rest (issue 15; backwards compatible):

* ASSIGN may carry ``keys: {current, keys: {version: hex}}``: the tenant's plaintext
  data keys (only over this authenticated socket). The worker seals every file it writes
  for the tenant under ``current`` and holds the keys only while it owns the tenant.
  Without ``keys`` the tenant's files are plaintext (and sealed ones cannot be read).
* RESEAL ``{}`` -> ``{collections}``: rewrite the collections not yet under the current key.
* DIGEST_TENANT ``{tenant}`` -> ``{files: [{path, sha256}]}`` (storage op): the tenant's
  files as stored, hot and cold, for a deletion receipt.
* DELETE_COLLECTION's reply carries ``files: [{path, sha256}]``: what it removed.

Additions (issue 14, everyday data operations; new ops only):

* LIST_VECTORS ``{collection, after, limit, filter?, include_metadata, include_values}`` ->
  ``{ids, metadata?, more}`` + ``values`` (m, d) <f4 when asked: up to ``limit`` ids
  greater than ``after`` (a string or null) in ascending code point (= UTF-8 byte) order,
  and whether more matching ids follow. The coordinator turns ``after`` into a cursor.
* COUNT_VECTORS ``{collection, filter?}`` -> ``{count}``, exact.
* UPDATE_METADATA ``{collection, ids | filter, set?, unset?, max_metadata_bytes?}`` ->
  ``{updated}``: metadata only, one WAL record, durable before the reply; a result over
  ``max_metadata_bytes`` is INVALID and nothing is written. ``filter: {}`` matches all.

Backups (issue 17; new ops only, see ``workers.backup_files``):

* BACKUP_TENANT ``{backup_id, kind, collections?, head, started_at}`` (data op, owner)
  -> ``{backup_id, collections, vectors, bytes, head_seq, ...}``: a consistent backup of
  the tenant's collections (all, or the listed ones) written to the backup store.
* BACKUP_COLD_TENANT (storage op, tenant released): the same from a paused tenant's
  cold copy.
* RESTORE_TENANT ``{backup_id, collections?, suffix?, rename?, replace}`` (data op)
  -> ``{restored, from, vectors}``: every file's SHA-256 checked before anything live
  is replaced; ``replace: false`` refuses (CONFLICT) to overwrite a live collection.

The lean query path (issue 11; backwards compatible):

* QUERY ``render`` (``"single"``, ``"batch"`` or null): the worker renders the client's
  JSON answer itself (``workers.query_answer``) and replies ``{rendered: true}`` plus
  the uint8 array ``body``; the coordinator forwards those bytes to the client as they
  are. A worker that leaves ``rendered`` out answered ``results`` as before.
* QUERY ``filter_pieces`` (issue 12): the filter's operand lists longer than 4,096 are
  empty in ``filter`` and travel as JSON pieces in the uint8 arrays ``fp0``, ``fp1``...;
  ``filter_pieces`` is ``[[path, count], ...]`` (workers.filter_pieces). Sent only to
  a worker whose HELLO says ``filter_pieces: true``.
* GET_COLLECTION's reply carries ``unindexed``: the collection's vectors not yet in its
  HNSW graph (searched exactly meanwhile; 0 for flat). A worker that leaves it out
  cannot tell.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import orjson

PROTOCOL_VERSION = 1

_LEN = struct.Struct("<I")
_MAX_HEADER = 64 * 1024 * 1024
# dtypes already parsed, by their string (a few kinds travel; the cache stays small)
_DTYPES: dict[str, np.dtype[Any]] = {}
_MAX_DTYPES = 32

# Tenant ids and collection names become path components on the worker, so
# both are checked against these patterns on every frame.
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
COLLECTION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Op(StrEnum):
    """Operations carried in the ``op`` header field."""

    # worker -> coordinator
    HELLO = "hello"  # {worker_id, secret, pid, protocol}
    HEARTBEAT = "heartbeat"  # {seq, load: {tenants, memory_bytes, queue_depth}}
    # coordinator -> worker: {seq} echoes a heartbeat from a worker the hub still
    # counts as live. The worker's ownership lease runs from the time it SENT that
    # heartbeat, so frames queued while it was frozen cannot renew it.
    HEARTBEAT_ACK = "heartbeat_ack"
    # coordinator -> worker, control
    WELCOME = "welcome"  # reply to hello: {ok: true}
    ASSIGN = "assign"  # {tenant, epoch}: take ownership (lock the tenant dir)
    RELEASE = "release"  # {tenant, epoch}: unload and unlock
    # coordinator -> worker, data (all carry tenant + epoch)
    # CREATE_COLLECTION {collection, dimension, metric, index, hnsw?, max_collections?}
    CREATE_COLLECTION = "create_collection"
    LIST_COLLECTIONS = "list_collections"  # {}
    GET_COLLECTION = "get_collection"  # {collection}
    DELETE_COLLECTION = "delete_collection"  # {collection}
    # UPSERT {collection, ids, metadata, max_vectors?} + arrays: vectors (n, d) <f4;
    # max_vectors caps the tenant's total vectors after the write (tier quota)
    UPSERT = "upsert"
    QUERY = "query"  # {collection, top_k, include_metadata, include_values, ...}
    FETCH = "fetch"  # {collection, ids}
    DELETE = "delete"  # {collection, ids} or {collection, filter}
    LIST_VECTORS = "list_vectors"  # {collection, after, limit, filter, include_*}
    COUNT_VECTORS = "count_vectors"  # {collection, filter}
    UPDATE_METADATA = "update_metadata"  # {collection, ids | filter, set, unset, ...}
    USAGE = "usage"  # {}
    BACKUP_TENANT = "backup_tenant"  # {backup_id, kind, collections?, head, started_at}
    RESTORE_TENANT = "restore_tenant"  # {backup_id, collections?, suffix?, rename?, replace}
    CANCEL = "cancel"  # {cancel: rid}: stop that request's work; never answered
    DELETE_TENANT = "delete_tenant"  # {}: remove every file of the tenant
    # {}: -> {collections}: rewrite every collection not yet under the tenant's current
    # data key (key rotation, upgrade of plaintext data); idempotent
    RESEAL = "reseal"
    # coordinator -> worker, storage tiering (no ownership; the tenant must be released)
    MOVE_TENANT = "move_tenant"  # {tenant, to: "hot"|"cold"} -> {tenant, location, ...}
    TENANT_SUMMARY = "tenant_summary"  # {tenant} -> {tenant, location, collections?, ...}
    DELETE_COLD_TENANT = "delete_cold_tenant"  # {tenant}: explicit delete of a cold copy
    BACKUP_COLD_TENANT = "backup_cold_tenant"  # {tenant, backup_id, ...}: a paused tenant
    # {tenant} -> {files: [{path, sha256}]}: every file of the tenant, hot and cold
    DIGEST_TENANT = "digest_tenant"
    # either direction
    REPLY = "reply"  # {rid, ok, error?: {code, message}, ...result}


DATA_OPS = frozenset(
    {
        Op.CREATE_COLLECTION,
        Op.LIST_COLLECTIONS,
        Op.GET_COLLECTION,
        Op.DELETE_COLLECTION,
        Op.UPSERT,
        Op.QUERY,
        Op.FETCH,
        Op.DELETE,
        Op.USAGE,
        Op.DELETE_TENANT,
        Op.LIST_VECTORS,
        Op.COUNT_VECTORS,
        Op.UPDATE_METADATA,
        Op.BACKUP_TENANT,
        Op.RESTORE_TENANT,
        Op.RESEAL,
    }
)

STORAGE_OPS = frozenset(
    {
        Op.MOVE_TENANT,
        Op.TENANT_SUMMARY,
        Op.DELETE_COLD_TENANT,
        Op.BACKUP_COLD_TENANT,
        Op.DIGEST_TENANT,
    }
)


class ErrorCode(StrEnum):
    """Error codes a worker may put in a reply; the API maps them to HTTP."""

    NOT_FOUND = "not_found"  # collection missing
    CONFLICT = "conflict"  # collection exists
    INVALID = "invalid"  # bad arguments (dimension, names, filter)
    NOT_OWNER = "not_owner"  # tenant not owned at that epoch: re-route
    UNAVAILABLE = "unavailable"  # tenant cannot be served (lock held, corrupt)
    BUSY = "busy"  # backpressure: try again later
    QUOTA_EXCEEDED = "quota_exceeded"  # the tenant's tier quota would be passed
    INSUFFICIENT_STORAGE = "insufficient_storage"  # the disk is (nearly) full
    INTERNAL = "internal"


# ASSIGN refused because the tenant's files are in cold storage: paused on purpose,
# so the coordinator does not count it as unservable nor retry the hand-over.
TENANT_PAUSED_MESSAGE = "tenant is paused; its data is in cold storage"


class ProtocolError(ValueError):
    """A frame that cannot be decoded."""


@dataclass(slots=True)
class Frame:
    """A decoded frame: the JSON header and the named arrays."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def op(self) -> str:
        return str(self.header.get("op", ""))

    @property
    def rid(self) -> int:
        return int(self.header.get("rid", 0))


def encode_frame(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """Encode a header and arrays into one binary frame."""
    parts: list[bytes | memoryview] = []
    specs: list[list[Any]] = []
    for name, arr in (arrays or {}).items():
        a = arr if type(arr) is np.ndarray and arr.flags.c_contiguous else np.ascontiguousarray(arr)
        specs.append([name, a.dtype.str, list(a.shape)])
        # joined below straight from the array's memory: one copy, not two
        parts.append(a.data.cast("B") if a.size else b"")
    head = orjson.dumps({**header, "arrays": specs} if specs else header)
    return b"".join([_LEN.pack(len(head)), head, *parts])


def header_length(data: bytes) -> int:
    """The length a frame gives its JSON header (0 for a frame too short to say)."""
    return _LEN.unpack_from(data, 0)[0] if len(data) >= _LEN.size else 0


def decode_frame(data: bytes) -> Frame:
    """Decode one binary frame; raise ProtocolError on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < _LEN.size:
        raise ProtocolError("frame too short")
    view = memoryview(data)
    (hlen,) = _LEN.unpack_from(view, 0)
    if hlen > _MAX_HEADER or _LEN.size + hlen > len(view):
        raise ProtocolError("bad header length")
    try:
        header = orjson.loads(view[_LEN.size : _LEN.size + hlen])
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"bad header: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("header is not an object")
    if not isinstance(header.get("rid", 0), int):
        raise ProtocolError("rid must be an integer")
    arrays: dict[str, np.ndarray] = {}
    offset = _LEN.size + hlen
    for spec in header.pop("arrays", None) or []:
        try:
            name, dtype_str, shape = spec
            dtype = _DTYPES.get(dtype_str) if type(dtype_str) is str else None
            if dtype is None:
                dtype = np.dtype(dtype_str)
                if dtype.hasobject:
                    raise ProtocolError("object arrays are not allowed")
                if type(dtype_str) is str and len(_DTYPES) < _MAX_DTYPES:
                    _DTYPES[dtype_str] = dtype
            dims = [int(n) for n in shape]
            count = 1
            for n in dims:
                # checked one dimension at a time so a huge shape cannot overflow
                if n < 0 or count * n > len(view):
                    raise ProtocolError(f"bad array shape: {shape!r}")
                count *= n
            nbytes = count * dtype.itemsize
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"bad array spec: {spec!r}") from exc
        if offset + nbytes > len(view):
            raise ProtocolError("array payload truncated")
        arrays[str(name)] = np.frombuffer(view, dtype=dtype, count=count, offset=offset).reshape(
            dims
        )
        offset += nbytes
    if offset != len(view):
        raise ProtocolError("trailing bytes after arrays")
    return Frame(header=header, arrays=arrays)


def reply_ok(rid: int, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Header of a successful reply."""
    return {"op": Op.REPLY.value, "rid": rid, "ok": True, **(result or {})}


def reply_error(rid: int, code: ErrorCode | str, message: str) -> dict[str, Any]:
    """Header of a failed reply."""
    return {
        "op": Op.REPLY.value,
        "rid": rid,
        "ok": False,
        "error": {"code": str(code), "message": message},
    }
