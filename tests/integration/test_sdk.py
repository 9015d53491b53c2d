"""The Python SDK (sync and async) against a real ``vectorpanda up``."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import vectorpanda
from tests.stack import Stack
from vectorpanda_client import (
    AsyncClient,
    Client,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    QueryResult,
    UnauthorizedError,
    VectorPandaError,
)

pytestmark = pytest.mark.integration

DIM = 16
RNG = np.random.default_rng(11)


def exact_top_k(data: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    scores = ((data - q) ** 2).sum(axis=1)
    return np.argsort(scores, kind="stable")[:k].tolist()


def test_package_exports_both_clients() -> None:
    assert vectorpanda.Client is Client and vectorpanda.AsyncClient is AsyncClient
    assert issubclass(vectorpanda.VectorPandaError, Exception)


def test_sync_client_whole_surface_with_numpy(stack: Stack) -> None:
    key = stack.new_client("sdk-sync")
    data = RNG.standard_normal((2500, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(len(data))]
    meta = [{"group": "even" if i % 2 == 0 else "odd", "i": i} for i in range(len(data))]
    with Client(stack.url, key) as client:
        info = client.create_collection("docs", DIM, metric="l2")
        assert (info.name, info.dimension, info.metric, info.index) == ("docs", DIM, "l2", "flat")
        client.create_collection("other", 4)
        assert [c.name for c in client.list_collections()] == ["docs", "other"]
        docs = client.collection("docs")
        # 2,500 vectors go as three values_b64 batches of at most 1,000
        assert docs.upsert(ids, data, meta) == 2500
        assert docs.describe().vector_count == 2500

        result = docs.query(data[42], top_k=5, include_metadata=True, include_values=True)
        assert isinstance(result, QueryResult)
        assert result.ids == [ids[j] for j in exact_top_k(data, data[42], 5)]
        assert result.scores.dtype == np.float32 and result.scores[0] == pytest.approx(0.0)
        assert result[0].metadata == meta[42]
        assert result.values is not None and np.array_equal(result.values[0], data[42])

        # a matrix of 150 queries (two requests) answers one result per row, in order
        batch = docs.query(data[:150], top_k=3)
        assert isinstance(batch, list) and len(batch) == 150
        for qi in (0, 99, 100, 149):
            assert batch[qi].ids == [ids[j] for j in exact_top_k(data, data[qi], 3)]

        fetched = docs.fetch(["v7", "missing", "v2499"])
        assert set(fetched) == {"v7", "v2499"}
        assert fetched["v7"].values.dtype == np.float32
        assert np.array_equal(fetched["v7"].values, data[7]) and fetched["v7"].metadata == meta[7]

        # replace, then delete: neither old vector comes back
        assert docs.upsert(["v7"], -data[7:8]) == 1
        assert np.array_equal(docs.fetch(["v7"])["v7"].values, -data[7])
        assert docs.delete(ids=["v7", "v8", "nope"]) == 2
        top = docs.query(data[8], top_k=1)
        assert isinstance(top, QueryResult) and top.ids != ["v8"]

        usage = client.usage()
        assert usage.tier == "free" and usage.collections == 2 and usage.vectors == 2498
        assert usage.limits["max_collections"] >= 2 and usage.limits["requests_per_second"] > 0

        client.delete_collection("other")
        assert [c.name for c in client.list_collections()] == ["docs"]


def test_typed_errors_carry_the_api_code(stack: Stack) -> None:
    key = stack.new_client("sdk-errors")
    with Client(stack.url, key) as client:
        client.create_collection("c", 4)
        c = client.collection("c")
        with pytest.raises(ConflictError) as conflict:
            client.create_collection("c", 4)
        assert conflict.value.code == "conflict" and conflict.value.status == 409
        assert conflict.value.request_id
        with pytest.raises(NotFoundError):
            client.collection("absent").query([1.0, 2.0, 3.0, 4.0])
        with pytest.raises(NotFoundError):
            client.delete_collection("absent")
        with pytest.raises(InvalidError) as wrong_dim:
            c.upsert(["a"], np.ones((1, 5), dtype=np.float32))
        assert wrong_dim.value.status == 422
        with pytest.raises(InvalidError, match="top_k"):
            c.query([1.0, 2.0, 3.0, 4.0], top_k=5000)
        with pytest.raises(InvalidError, match="256 bytes"):
            c.fetch(["x" * 300])
    with Client(stack.url, "vp_0123456789abcdef_" + "x" * 43) as stranger:
        with pytest.raises(UnauthorizedError) as unauthorized:
            stranger.list_collections()
        assert isinstance(unauthorized.value, VectorPandaError)
    reader = stack.new_client("sdk-reader", scopes=("read",))
    with Client(stack.url, reader) as client, pytest.raises(ForbiddenError, match="manage"):
        client.create_collection("x", 4)


def test_another_clients_collection_is_not_found(stack: Stack) -> None:
    owner, other = stack.new_client("sdk-owner"), stack.new_client("sdk-other")
    with Client(stack.url, owner) as a, Client(stack.url, other) as b:
        a.create_collection("private", 4)
        a.collection("private").upsert(["s"], [[1.0, 0.0, 0.0, 0.0]])
        with pytest.raises(NotFoundError):
            b.collection("private").fetch(["s"])


def test_async_client_same_surface(stack: Stack) -> None:
    key = stack.new_client("sdk-async")
    data = RNG.standard_normal((1200, DIM)).astype(np.float32)
    ids = [f"a{i}" for i in range(len(data))]

    async def main() -> None:
        async with AsyncClient(stack.url, key) as client:
            await client.create_collection("docs", DIM, "l2")
            assert [c.name for c in await client.list_collections()] == ["docs"]
            docs = client.collection("docs")
            assert await docs.upsert(ids, data, [{"n": i} for i in range(len(data))]) == 1200
            # concurrent queries over one client
            results = await asyncio.gather(*(docs.query(data[i], top_k=3) for i in range(20)))
            for i, r in enumerate(results):
                assert isinstance(r, QueryResult)
                assert r.ids == [ids[j] for j in exact_top_k(data, data[i], 3)]
            got = await docs.fetch(["a5"])
            assert np.array_equal(got["a5"].values, data[5]) and got["a5"].metadata == {"n": 5}
            assert await docs.delete(ids=["a5"]) == 1
            assert (await client.usage()).vectors == 1199
            with pytest.raises(NotFoundError):
                await client.collection("nope").describe()
            await client.delete_collection("docs")
            assert await client.list_collections() == []

    asyncio.run(main())
