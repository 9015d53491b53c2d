"""list/count/update from the SDK (sync and async) and the CLI, against a real service."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import orjson
import pytest

from tests.stack import Stack
from vectorpanda_client import AsyncClient, Client, InvalidError, ListedVector

pytestmark = pytest.mark.integration

DIM = 4
N = 230


def _fill(stack: Stack, name: str, index: str) -> tuple[str, np.ndarray]:
    key = stack.new_client(name)
    data = np.random.default_rng(2).standard_normal((N, DIM)).astype(np.float32)
    with Client(stack.url, key) as client:
        client.create_collection("c", DIM, "l2", index)
        ids = [f"id-{i:04d}" for i in range(N)]
        client.collection("c").upsert(ids, data, [{"odd": i % 2 == 1, "i": i} for i in range(N)])
    return key, data


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_sync_sdk_list_iterates_every_page_count_and_update(stack: Stack, index: str) -> None:
    key, data = _fill(stack, f"sdk-rec-{index}", index)
    with Client(stack.url, key) as client:
        c = client.collection("c")
        listed = list(c.list(page_size=17, include_metadata=True, include_values=True))
        assert [v.id for v in listed] == [f"id-{i:04d}" for i in range(N)]
        assert all(isinstance(v, ListedVector) for v in listed)
        assert listed[5].metadata == {"odd": True, "i": 5}
        assert listed[5].values is not None and np.array_equal(listed[5].values, data[5])
        odd = [v.id for v in c.list(filter={"odd": True}, page_size=1000)]
        assert odd == [f"id-{i:04d}" for i in range(1, N, 2)]
        page = c.list_page(limit=3)
        assert [v.id for v in page.vectors] == ["id-0000", "id-0001", "id-0002"]
        assert page.next_cursor is not None
        assert c.count() == N and c.count({"odd": False}) == N - N // 2
        # 1,500 ids (most missing) go in two batches of at most 1,000.
        ids = [f"id-{i:04d}" for i in range(1500)]
        assert c.update(ids, set={"seen": True}) == N
        assert c.update(filter={"i": {"$lt": 10}}, unset=["odd"]) == 10
        assert c.count({"seen": True}) == N
        assert c.count({"odd": {"$exists": False}}) == 10
        with pytest.raises(InvalidError):
            c.update(["id-0001"])
        with pytest.raises(InvalidError):
            c.update(["id-0001"], filter={}, set={"a": 1})
        with pytest.raises(InvalidError):
            c.list_page(cursor="forged")


def test_async_sdk_list_count_update(stack: Stack) -> None:
    key, _ = _fill(stack, "sdk-rec-async", "flat")

    async def run() -> None:
        async with AsyncClient(stack.url, key) as client:
            c = client.collection("c")
            ids = [v.id async for v in c.list(page_size=50)]
            assert ids == [f"id-{i:04d}" for i in range(N)]
            assert await c.count({"odd": True}) == N // 2
            assert await c.update(filter={"odd": True}, set={"tag": "x"}) == N // 2
            tagged = [v async for v in c.list(filter={"tag": "x"}, include_metadata=True)]
            assert len(tagged) == N // 2 and all(v.metadata["tag"] == "x" for v in tagged)
            page = await c.list_page(limit=1000)
            assert len(page.vectors) == N and page.next_cursor is None

    asyncio.run(run())


def _vp(stack: Stack, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VP_API_KEY", "VP_URL")}
    env |= {"VP_URL": stack.url, "VP_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "vectorpanda", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_list_count_update(stack: Stack) -> None:
    key, _ = _fill(stack, "cli-rec", "flat")
    run = _vp(stack, key, "count", "--collection", "c")
    assert run.returncode == 0 and run.stdout.strip() == str(N), run.stderr
    run = _vp(stack, key, "count", "--collection", "c", "--filter", '{"odd": true}')
    assert run.stdout.strip() == str(N // 2), run.stderr
    run = _vp(stack, key, "list", "--collection", "c", "--page-size", "7")
    assert run.returncode == 0 and run.stdout.split() == [f"id-{i:04d}" for i in range(N)]
    run = _vp(stack, key, "update", "--collection", "c", "--ids", "id-0001,id-0002,nope",
              "--set", '{"star": 5}', "--unset", "odd")  # fmt: skip
    assert run.returncode == 0 and "updated 2" in run.stdout, run.stderr
    run = _vp(stack, key, "list", "--collection", "c", "--filter", '{"star": 5}',
              "--metadata", "--json")  # fmt: skip
    rows = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert rows == [
        {"id": "id-0001", "metadata": {"i": 1, "star": 5}},
        {"id": "id-0002", "metadata": {"i": 2, "star": 5}},
    ]
    run = _vp(stack, key, "list", "--collection", "c", "--max", "3")
    assert run.stdout.split() == ["id-0000", "id-0001", "id-0002"]
    run = _vp(stack, key, "update", "--collection", "c", "--filter", "{}")
    assert run.returncode == 2 and "--set" in run.stderr
    run = _vp(stack, key, "update", "--collection", "c", "--ids", "a", "--set", '{"x": {"y": 1}}')
    assert run.returncode == 1 and "invalid" in run.stderr
    run = _vp(stack, key, "count", "--collection", "nope")
    assert run.returncode == 1 and "not_found" in run.stderr
