"""``vectorpanda.AsyncClient``: the asyncio client, same surface as ``Client``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from vectorpanda_client import operations as ops
from vectorpanda_client import records
from vectorpanda_client.base import DEFAULT_TIMEOUT_S, ClientConfig, tls_verify
from vectorpanda_client.exchange import Call, Operation, Outcome
from vectorpanda_client.models import CollectionInfo, FetchedVector, Indexing, QueryResult, Usage
from vectorpanda_client.operations import Metadata
from vectorpanda_client.records import ListedVector, VectorPage
from vectorpanda_client.retry import RetryPolicy

T = TypeVar("T")


class AsyncClient:
    """``AsyncClient(url, api_key)``; use with ``async with`` or ``await aclose()``."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
        verify: str | bool | None = None,
    ) -> None:
        self._config = ClientConfig(url, api_key, retry, seed)
        self._http = httpx.AsyncClient(
            base_url=self._config.url,
            headers=self._config.headers,
            timeout=timeout,
            transport=transport,
            verify=tls_verify(verify),
        )

    async def _exchange(self, call: Call) -> Outcome:
        try:
            response = await self._http.request(**self._config.request_args(call))
            return self._config.answer(response)
        except httpx.TransportError as exc:
            return self._config.failure(exc)

    async def _run(self, op: Operation[T]) -> T:
        plan = self._config.plan(op)
        try:
            step = next(plan)
            while True:
                if isinstance(step, Call):
                    step = plan.send(await self._exchange(step))
                else:
                    await asyncio.sleep(step.seconds)
                    step = plan.send(None)
        except StopIteration as done:
            return done.value

    async def create_collection(
        self,
        name: str,
        dimension: int,
        metric: str = "cosine",
        index: str = "flat",
        *,
        hnsw: dict[str, int] | None = None,
    ) -> CollectionInfo:
        """Create a collection; ``hnsw`` takes ``{"m", "ef_construction"}``."""
        return await self._run(ops.create_collection(name, dimension, metric, index, hnsw))

    async def list_collections(self) -> list[CollectionInfo]:
        return await self._run(ops.list_collections())

    async def delete_collection(self, name: str) -> None:
        await self._run(ops.delete_collection(name))

    async def usage(self) -> Usage:
        return await self._run(ops.usage())

    def collection(self, name: str) -> AsyncCollection:
        """A handle on a collection (no request is made)."""
        return AsyncCollection(self, name)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncCollection:
    """Vectors of one collection through an ``AsyncClient``."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name

    async def describe(self) -> CollectionInfo:
        return await self._client._run(ops.describe_collection(self.name))

    async def indexing(self) -> Indexing:
        """How many vectors the HNSW graph holds and how many still wait for it."""
        return await self._client._run(ops.collection_indexing(self.name))

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Metadata | None] | None = None,
        *,
        batch_size: int = ops.MAX_UPSERT_VECTORS,
    ) -> int:
        """Insert or replace vectors (numpy (n, d) or rows); returns how many were upserted."""
        return await self._client._run(ops.upsert(self.name, ids, vectors, metadata, batch_size))

    async def query(
        self,
        vector_or_matrix: Any,
        top_k: int = 10,
        filter: Metadata | None = None,
        include_metadata: bool = False,
        include_values: bool = False,
        *,
        ef_search: int | None = None,
    ) -> QueryResult | list[QueryResult]:
        """Nearest neighbours: a ``QueryResult`` for one vector, a list of them for a matrix."""
        return await self._client._run(
            ops.query(
                self.name,
                vector_or_matrix,
                top_k,
                filter,
                include_metadata,
                include_values,
                ef_search,
            )
        )

    async def fetch(self, ids: Sequence[str]) -> dict[str, FetchedVector]:
        return await self._client._run(ops.fetch(self.name, ids))

    async def delete(self, ids: Sequence[str] | None = None, filter: Metadata | None = None) -> int:
        """Delete by ids or by metadata filter; returns how many were deleted."""
        return await self._client._run(ops.delete(self.name, ids, filter))

    async def count(self, filter: Metadata | None = None) -> int:
        """The exact number of vectors, or of those matching ``filter``."""
        return await self._client._run(records.count(self.name, filter))

    async def update(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Metadata | None = None,
        set: Metadata | None = None,
        unset: Sequence[str] | None = None,
    ) -> int:
        """Change metadata by ids or filter without re-sending vectors: ``set`` merges
        fields, ``unset`` removes them. Returns how many vectors matched."""
        return await self._client._run(records.update(self.name, ids, filter, set, unset))

    async def list_page(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: Metadata | None = None,
        include_metadata: bool = False,
        include_values: bool = False,
    ) -> VectorPage:
        """One page of ids in ascending byte order; pass ``next_cursor`` back for the next."""
        return await self._client._run(
            records.list_page(self.name, limit, cursor, filter, include_metadata, include_values)
        )

    # Last in the class: the name ``list`` would shadow the builtin in annotations below it.
    async def list(
        self,
        *,
        filter: Metadata | None = None,
        include_metadata: bool = False,
        include_values: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[ListedVector]:
        """Every vector (matching ``filter``), in ascending id byte order, page by page.

        A walk, not a snapshot: vectors written meanwhile may or may not appear, but no
        id appears twice and none present throughout is skipped.
        """
        cursor = None
        while True:
            page = await self.list_page(
                limit=page_size,
                cursor=cursor,
                filter=filter,
                include_metadata=include_metadata,
                include_values=include_values,
            )
            for vector in page.vectors:
                yield vector
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
