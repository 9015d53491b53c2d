"""``vectorpanda.Client``: the blocking client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import httpx
import numpy as np

from vectorpanda_client import operations as ops
from vectorpanda_client import records
from vectorpanda_client.base import DEFAULT_TIMEOUT_S, ClientConfig, tls_verify
from vectorpanda_client.binary import ACCEPT, CONTENT_TYPE
from vectorpanda_client.exchange import Answer, Call, Operation, Outcome, retry_delay
from vectorpanda_client.models import CollectionInfo, FetchedVector, Indexing, QueryResult, Usage
from vectorpanda_client.operations import Metadata
from vectorpanda_client.records import ListedVector, VectorPage
from vectorpanda_client.retry import RetryPolicy
from vectorpanda_client.transport import Pool

T = TypeVar("T")
_MAX_QUERY_HEADS = 256  # kept request heads of one-vector queries (then start again)


class _Unset:
    """No outcome yet (``Client._run``'s ``first``; None is an outcome)."""


_UNSET = _Unset()


class Client:
    """A VectorPanda client: ``Client(url, api_key)``; use as a context manager or close()."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        seed: int | None = None,
        verify: str | bool | None = None,
    ) -> None:
        self._config = ClientConfig(url, api_key, retry, seed)
        verify = tls_verify(verify)
        self._http: httpx.Client | None = None
        self._pool: Pool | None = None
        # (collection, top_k, include_metadata, ef_search, dimension) -> a one-vector
        # query's request up to the vector's bytes (_query_one)
        self._query_heads: dict[tuple[str, int, bool, int | None, int], bytes] = {}
        if transport is None:
            # Plain keep-alive sockets, one write per request (transport.py).
            self._pool = Pool(self._config.url, self._config.headers, timeout, verify)
        else:
            self._http = httpx.Client(
                base_url=self._config.url,
                headers=self._config.headers,
                timeout=timeout,
                transport=transport,
                verify=verify,
            )

    def _exchange(self, call: Call) -> Outcome:
        try:
            if self._pool is not None:
                status, headers, content = self._pool.request(
                    call.method, call.path, call.content(), call.content_type, call.accept
                )
                return Answer(status, headers, content)
            assert self._http is not None
            return self._config.answer(self._http.request(**self._config.request_args(call)))
        except httpx.TransportError as exc:
            return self._config.failure(exc)

    def _run(self, op: Operation[T], first: Outcome | _Unset = _UNSET) -> T:
        """Carry out ``op`` by the rules of ``exchange.with_retries``, driven directly
        (one generator step fewer per request on the hot path). ``first``: the outcome
        of ``op``'s first call, already made (``_query_one``), taken as its first try."""
        policy, rng = self._config.retry, self._config.rng
        try:
            call = next(op)
            while True:
                attempt = 0
                while True:
                    if isinstance(first, _Unset):
                        outcome = self._exchange(call)
                    else:
                        outcome, first = first, _UNSET
                    delay = retry_delay(op, call, outcome, attempt, policy, rng)
                    if delay is None:
                        break
                    time.sleep(delay)
                    attempt += 1
                call = op.send(cast(Answer, outcome))  # retry_delay said it answered
        except StopIteration as done:
            return done.value

    def _query_one(
        self,
        name: str,
        vector: np.ndarray,
        top_k: int,
        include_metadata: bool,
        ef_search: int | None,
    ) -> QueryResult:
        """One vector's query, without filter or values, over the keep-alive pool: the
        bytes ``ops.query`` would send, with the request's head and the body's fixed part
        kept per collection, options and dimension, and the answer read as ``ops.query``
        reads it. An error answer, or a broken exchange, goes on through ``_run``
        as that operation's first try, so errors and retries are exactly the same."""
        pool = self._pool
        assert pool is not None
        matrix = ops.as_matrix(vector, "query vectors")
        dimension = matrix.shape[1]
        key = (name, top_k, include_metadata, ef_search, dimension)
        prefix = self._query_heads.get(key)
        if prefix is None:
            body = ops.single_query_prefix(top_k, include_metadata, ef_search, dimension)
            head = pool.head(
                "POST", ops.collection_path(name, "query"), CONTENT_TYPE, ACCEPT,
                len(body) + 4 * dimension,
            )  # fmt: skip
            if len(self._query_heads) >= _MAX_QUERY_HEADS:
                self._query_heads.clear()
            prefix = self._query_heads[key] = head + body
        first: Outcome
        try:
            status, headers, content = pool.exchange(prefix + matrix.tobytes())
        except httpx.TransportError as exc:
            first = self._config.failure(exc)
        else:
            first = Answer(status, dict(headers), content)
            if status < 400:
                return ops.single_query_result(first)
        op = ops.query(name, vector, top_k, None, include_metadata, False, ef_search)
        return cast(QueryResult, self._run(op, first))

    def create_collection(
        self,
        name: str,
        dimension: int,
        metric: str = "cosine",
        index: str = "flat",
        *,
        hnsw: dict[str, int] | None = None,
    ) -> CollectionInfo:
        """Create a collection; ``hnsw`` takes ``{"m", "ef_construction"}``."""
        return self._run(ops.create_collection(name, dimension, metric, index, hnsw))

    def list_collections(self) -> list[CollectionInfo]:
        return self._run(ops.list_collections())

    def delete_collection(self, name: str) -> None:
        self._run(ops.delete_collection(name))

    def usage(self) -> Usage:
        return self._run(ops.usage())

    def collection(self, name: str) -> Collection:
        """A handle on a collection (no request is made)."""
        return Collection(self, name)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Collection:
    """Vectors of one collection through a ``Client``."""

    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self.name = name

    def describe(self) -> CollectionInfo:
        return self._client._run(ops.describe_collection(self.name))

    def indexing(self) -> Indexing:
        """How many vectors the HNSW graph holds and how many still wait for it."""
        return self._client._run(ops.collection_indexing(self.name))

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Metadata | None] | None = None,
        *,
        batch_size: int = ops.MAX_UPSERT_VECTORS,
    ) -> int:
        """Insert or replace vectors (numpy (n, d) or rows); returns how many were upserted."""
        return self._client._run(ops.upsert(self.name, ids, vectors, metadata, batch_size))

    def query(
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
        client = self._client
        if (
            type(vector_or_matrix) is np.ndarray
            and vector_or_matrix.ndim == 1
            and filter is None
            and not include_values
            and client._pool is not None
        ):
            return client._query_one(
                self.name, vector_or_matrix, top_k, include_metadata, ef_search
            )
        return client._run(
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

    def fetch(self, ids: Sequence[str]) -> dict[str, FetchedVector]:
        return self._client._run(ops.fetch(self.name, ids))

    def delete(self, ids: Sequence[str] | None = None, filter: Metadata | None = None) -> int:
        """Delete by ids or by metadata filter; returns how many were deleted."""
        return self._client._run(ops.delete(self.name, ids, filter))

    def count(self, filter: Metadata | None = None) -> int:
        """The exact number of vectors, or of those matching ``filter``."""
        return self._client._run(records.count(self.name, filter))

    def update(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Metadata | None = None,
        set: Metadata | None = None,
        unset: Sequence[str] | None = None,
    ) -> int:
        """Change metadata by ids or filter without re-sending vectors: ``set`` merges
        fields, ``unset`` removes them. Returns how many vectors matched."""
        return self._client._run(records.update(self.name, ids, filter, set, unset))

    def list_page(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        filter: Metadata | None = None,
        include_metadata: bool = False,
        include_values: bool = False,
    ) -> VectorPage:
        """One page of ids in ascending byte order; pass ``next_cursor`` back for the next."""
        return self._client._run(
            records.list_page(self.name, limit, cursor, filter, include_metadata, include_values)
        )

    # Last in the class: the name ``list`` would shadow the builtin in annotations below it.
    def list(
        self,
        *,
        filter: Metadata | None = None,
        include_metadata: bool = False,
        include_values: bool = False,
        page_size: int = 100,
    ) -> Iterator[ListedVector]:
        """Every vector (matching ``filter``), in ascending id byte order, page by page.

        A walk, not a snapshot: vectors written meanwhile may or may not appear, but no
        id appears twice and none present throughout is skipped.
        """
        cursor = None
        while True:
            page = self.list_page(
                limit=page_size,
                cursor=cursor,
                filter=filter,
                include_metadata=include_metadata,
                include_values=include_values,
            )
            yield from page.vectors
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
