"""Data-plane commands: turn validated requests into worker frames and back.

The API parses and validates the edge; this module builds the binary frames
(vectors stay float32 numpy arrays end to end) and shapes the replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from coordinator.errors import TenantUnavailable
from coordinator.filter_pieces import piece_arrays
from coordinator.list_cursor import ListCursors
from coordinator.router import TenantRouter
from workers.filter_pieces import KEY as PIECES_KEY
from workers.filter_pieces import Path as PiecePath
from workers.protocol import Op
from workers.query_answer import binary_from_json, render_answer, render_binary


@dataclass(frozen=True, slots=True)
class Match:
    """One query result: id, score and optionally metadata and values."""

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class FetchedVector:
    values: np.ndarray
    metadata: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ListedVector:
    """One vector of a listing page: its id, and metadata and values when asked."""

    id: str
    metadata: dict[str, Any] | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class VectorPage:
    """A page of a listing and the cursor of the next one (None on the last page)."""

    vectors: list[ListedVector]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits, from settings."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_dimension: int = 4096
    max_upsert_vectors: int = 1000
    max_query_vectors: int = 100
    max_ids_per_request: int = 1000
    max_top_k: int = 1000
    max_metadata_bytes: int = 16 * 1024
    max_filter_depth: int = 8
    max_filter_operands: int = 100_000


class Metering(Protocol):
    """Told what each answered request did, for billing (``coordinator.usage.UsageMeter``)."""

    def record_queries(self, client_id: str, n: int) -> None: ...

    def record_upserted(self, client_id: str, n: int) -> None: ...


class DataPlane:
    """Tenant-scoped vector operations, routed to the owning worker.

    With ``metering``, every answered query and upsert is counted there (after the
    worker's answer; a failed call counts nothing).
    """

    def __init__(
        self,
        router: TenantRouter,
        limits: Limits,
        *,
        cursors: ListCursors | None = None,
        metering: Metering | None = None,
    ) -> None:
        self._router = router
        self.limits = limits
        self.metering = metering
        # The composition root passes a key derived from the pepper (same in every
        # coordinator of a fleet); without one, cursors are valid in this process only.
        self.cursors = cursors or ListCursors.ephemeral()

    @property
    def router(self) -> TenantRouter:
        return self._router

    async def create_collection(
        self,
        tenant: str,
        name: str,
        dimension: int,
        metric: str,
        index: str,
        hnsw: dict[str, int] | None,
        max_collections: int | None = None,
    ) -> dict[str, Any]:
        args = {
            "collection": name,
            "dimension": dimension,
            "metric": metric,
            "index": index,
            "hnsw": hnsw,
            "max_collections": max_collections,
        }
        reply = await self._router.call(tenant, Op.CREATE_COLLECTION, args, retry=False)
        info: dict[str, Any] = reply.header["collection"]
        return info

    async def list_collections(self, tenant: str) -> list[dict[str, Any]]:
        reply = await self._router.call(tenant, Op.LIST_COLLECTIONS)
        infos: list[dict[str, Any]] = reply.header["collections"]
        return infos

    async def _collection_reply(self, tenant: str, name: str) -> dict[str, Any]:
        """GET_COLLECTION's reply header: ``collection`` (INFO) and ``unindexed``."""
        reply = await self._router.call(tenant, Op.GET_COLLECTION, {"collection": name})
        return reply.header

    async def get_collection(self, tenant: str, name: str) -> dict[str, Any]:
        info: dict[str, Any] = (await self._collection_reply(tenant, name))["collection"]
        return info

    async def collection_indexing(self, tenant: str, name: str) -> dict[str, Any]:
        """How much of a collection its index holds: vectors in all, in the graph, and
        waiting for it (searched exactly meanwhile)."""
        header = await self._collection_reply(tenant, name)
        info: dict[str, Any] = header["collection"]
        unindexed = header.get("unindexed")
        if type(unindexed) is not int or unindexed < 0:
            raise TenantUnavailable("the collection's worker cannot tell its indexing yet")
        total = int(info.get("vector_count", 0))
        pending = min(unindexed, total)
        return {
            "name": info.get("name", name),
            "index": info.get("index"),
            "vector_count": total,
            "indexed": total - pending,
            "pending": pending,
            "fully_indexed": pending == 0,
        }

    async def delete_collection(self, tenant: str, name: str) -> list[tuple[str, str]]:
        """Delete a collection; the removed files as (path, sha256) of their stored bytes."""
        args = {"collection": name}
        reply = await self._router.call(tenant, Op.DELETE_COLLECTION, args, retry=False)
        files = reply.header.get("files") or []
        return [(str(f["path"]), str(f["sha256"])) for f in files if isinstance(f, dict)]

    async def reseal_tenant(self, tenant: str) -> list[str]:
        """Have the owner rewrite the tenant's collections under its current data key.

        The tenant is released first so the next ASSIGN carries its keys as they are now.
        """
        await self._router.release(tenant)
        reply = await self._router.call(tenant, Op.RESEAL)
        done: list[str] = reply.header.get("collections", [])
        return done

    async def release_tenant(self, tenant: str) -> None:
        """Unload the tenant from its owner (which drops its keys); the next request reloads."""
        await self._router.release(tenant)

    async def delete_tenant(self, tenant: str) -> None:
        """Remove every file of a (deleted) client; safe to repeat."""
        await self._router.call(tenant, Op.DELETE_TENANT)

    async def upsert(
        self,
        tenant: str,
        name: str,
        ids: list[str],
        vectors: np.ndarray,
        metadata: list[dict[str, Any] | None],
        max_vectors: int | None = None,
    ) -> int:
        args = {"collection": name, "ids": ids, "metadata": metadata, "max_vectors": max_vectors}
        reply = await self._router.call(tenant, Op.UPSERT, args, {"vectors": vectors})
        upserted = int(reply.header["upserted"])
        if self.metering is not None:
            self.metering.record_upserted(tenant, upserted)
        return upserted

    async def query(
        self,
        tenant: str,
        name: str,
        queries: np.ndarray,
        top_k: int,
        *,
        include_metadata: bool,
        include_values: bool,
        filter: dict[str, Any] | None,
        ef_search: int | None,
    ) -> list[list[Match]]:
        args = {
            "collection": name,
            "top_k": top_k,
            "include_metadata": include_metadata,
            "include_values": include_values,
            "filter": filter,
            "ef_search": ef_search,
        }
        reply = await self._router.call(tenant, Op.QUERY, args, {"queries": queries})
        values = reply.arrays.get("values") if include_values else None
        out: list[list[Match]] = []
        row = 0
        for result in reply.header["results"]:
            metas = result.get("metadata") if include_metadata else None
            matches = []
            for i, (vid, score) in enumerate(zip(result["ids"], result["scores"], strict=True)):
                matches.append(
                    Match(
                        id=vid,
                        score=float(score),
                        metadata=(metas[i] or {}) if metas is not None else None,
                        values=values[row] if values is not None else None,
                    )
                )
                row += 1
            out.append(matches)
        self._metered_queries(tenant, queries)
        return out

    async def query_json(
        self,
        tenant: str,
        name: str,
        queries: np.ndarray,
        top_k: int,
        *,
        include_metadata: bool,
        include_values: bool,
        filter: dict[str, Any] | orjson.Fragment | None,
        ef_search: int | None,
        single: bool,
        filter_pieces: list[tuple[PiecePath, list[bytes]]] | None = None,
        binary: bool = False,
        spent_s: float = 0.0,
    ) -> bytes:
        """The client's JSON answer, rendered by the worker and passed on as it is.

        ``single`` answers ``{"matches"}`` (one query vector), else ``{"results"}``.
        ``binary``: the binary answer instead (workers.query_answer.render_binary).
        ``spent_s``: the request's cost before it is routed (see ``TenantRouter.call``).
        ``filter_pieces``: the long operand lists ``filter`` holds empty, in pieces
        (workers/filter_pieces.py).
        """
        form = "single" if single else "batch"
        args = {
            "collection": name,
            "top_k": top_k,
            "include_metadata": include_metadata,
            "include_values": include_values,
            "filter": filter,
            "ef_search": ef_search,
            "render": form,
        }
        if binary:
            args["render_format"] = "binary"
        arrays = {"queries": queries}
        if filter_pieces:
            places, pieces = piece_arrays(filter_pieces)
            args[PIECES_KEY] = places
            arrays |= pieces
        reply = await self._router.call(tenant, Op.QUERY, args, arrays, spent_s=spent_s)
        body = reply.arrays.get("body")
        if body is not None and reply.header.get("rendered") is True:
            answer = body.tobytes()
            if binary and reply.header.get("format") != "binary":
                # a worker from before binary rendering answered JSON
                answer = binary_from_json(answer, include_metadata, include_values)
        else:
            # A worker from before rendering: its results, rendered the same way here.
            values = reply.arrays.get("values") if include_values else None
            results = reply.header["results"]
            if not include_metadata:
                results = [{k: v for k, v in r.items() if k != "metadata"} for r in results]
            render = render_binary if binary else render_answer
            answer = render(results, values, form).tobytes()
        self._metered_queries(tenant, queries)
        return answer

    def _metered_queries(self, tenant: str, queries: np.ndarray) -> None:
        if self.metering is not None:
            self.metering.record_queries(tenant, len(queries))

    async def fetch(self, tenant: str, name: str, ids: list[str]) -> dict[str, FetchedVector]:
        reply = await self._router.call(tenant, Op.FETCH, {"collection": name, "ids": ids})
        vectors = reply.arrays.get("vectors")
        found: list[str] = reply.header["ids"]
        metas: list[dict[str, Any] | None] = reply.header.get("metadata") or [None] * len(found)
        if vectors is None:
            return {}
        return {
            vid: FetchedVector(values=vectors[i], metadata=metas[i]) for i, vid in enumerate(found)
        }

    async def delete(
        self, tenant: str, name: str, ids: list[str] | None, filter: dict[str, Any] | None = None
    ) -> int:
        args: dict[str, Any] = {"collection": name}
        if filter is not None:
            args["filter"] = filter
        else:
            args["ids"] = ids
        reply = await self._router.call(tenant, Op.DELETE, args)
        return int(reply.header["deleted"])

    async def usage(self, tenant: str) -> dict[str, int]:
        reply = await self._router.call(tenant, Op.USAGE)
        return {k: int(reply.header.get(k, 0)) for k in ("collections", "vectors", "bytes")}

    async def list_vectors(
        self,
        tenant: str,
        name: str,
        *,
        limit: int,
        cursor: str | None,
        filter: dict[str, Any] | None,
        include_metadata: bool,
        include_values: bool,
    ) -> VectorPage:
        """One page of ids in ascending order; raises CursorError for a cursor not ours."""
        after = self.cursors.open(tenant, name, cursor) if cursor is not None else None
        args = {
            "collection": name,
            "after": after,
            "limit": limit,
            "filter": filter,
            "include_metadata": include_metadata,
            "include_values": include_values,
        }
        reply = await self._router.call(tenant, Op.LIST_VECTORS, args)
        ids: list[str] = reply.header["ids"]
        metas = reply.header.get("metadata") if include_metadata else None
        values = reply.arrays.get("values") if include_values else None
        vectors = [
            ListedVector(
                id=vid,
                metadata=(metas[i] or {}) if metas is not None else None,
                values=values[i] if values is not None else None,
            )
            for i, vid in enumerate(ids)
        ]
        more = bool(reply.header.get("more")) and bool(ids)
        next_cursor = self.cursors.issue(tenant, name, ids[-1]) if more else None
        return VectorPage(vectors, next_cursor)

    async def count_vectors(self, tenant: str, name: str, filter: dict[str, Any] | None) -> int:
        """Exact number of vectors (matching ``filter``, if given)."""
        args = {"collection": name, "filter": filter}
        reply = await self._router.call(tenant, Op.COUNT_VECTORS, args)
        return int(reply.header["count"])

    async def update_metadata(
        self,
        tenant: str,
        name: str,
        ids: list[str] | None,
        filter: dict[str, Any] | None,
        set_fields: dict[str, Any] | None,
        unset: list[str] | None,
    ) -> int:
        """Merge/remove metadata fields by ids or filter; durable before it returns."""
        args: dict[str, Any] = {
            "collection": name,
            "set": set_fields,
            "unset": unset,
            "max_metadata_bytes": self.limits.max_metadata_bytes,
        }
        if filter is not None:
            args["filter"] = filter
        else:
            args["ids"] = ids
        # Setting and removing fields is idempotent: a retry on a new owner is safe.
        reply = await self._router.call(tenant, Op.UPDATE_METADATA, args)
        return int(reply.header["updated"])
