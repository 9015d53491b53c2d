"""Data-plane commands: turn validated requests into worker frames and back.

The API parses and validates the edge; this module builds the binary frames
(vectors stay float32 numpy arrays end to end) and shapes the replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coordinator.router import TenantRouter
from workers.protocol import Op


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
class Limits:
    """Per-request limits, from settings."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_dimension: int = 4096
    max_upsert_vectors: int = 1000
    max_query_vectors: int = 100
    max_ids_per_request: int = 1000
    max_top_k: int = 1000
    max_metadata_bytes: int = 16 * 1024


class DataPlane:
    """Tenant-scoped vector operations, routed to the owning worker."""

    def __init__(self, router: TenantRouter, limits: Limits) -> None:
        self._router = router
        self.limits = limits

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

    async def get_collection(self, tenant: str, name: str) -> dict[str, Any]:
        reply = await self._router.call(tenant, Op.GET_COLLECTION, {"collection": name})
        info: dict[str, Any] = reply.header["collection"]
        return info

    async def delete_collection(self, tenant: str, name: str) -> None:
        await self._router.call(tenant, Op.DELETE_COLLECTION, {"collection": name}, retry=False)

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
        return int(reply.header["upserted"])

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
        return out

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
