"""Small HNSW queries are answered on the worker's event loop, never by waiting there.

A query of a loaded HNSW collection (or of a small flat one) with a few vectors and
no filter skips the thread hop. Anything that would wait for a lock a writer holds, read a file or
scan exactly goes to a thread as before, with the same answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from workers.collection_search import INLINE_MAX_FLAT_FLOATS
from workers.protocol import decode_frame, encode_frame
from workers.read_write_lock import ReadWriteLock, WouldBlock
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry

from .test_worker_service import TENANT, data

DIM = 16


def test_reading_without_waiting_refuses_while_a_writer_holds_or_waits() -> None:
    lock = ReadWriteLock()
    with lock.reading(wait=False):
        pass  # free: taken at once
    with lock.writing(), pytest.raises(WouldBlock), lock.reading(wait=False):
        pass
    held = threading.Event()
    release = threading.Event()

    def reader() -> None:
        with lock.reading():
            held.set()
            release.wait(5)

    def writer() -> None:
        with lock.writing():
            pass

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    threads[0].start()
    held.wait(5)
    threads[1].start()
    while lock._writers_waiting == 0:  # the writer now waits for the reader
        time.sleep(0.001)
    with pytest.raises(WouldBlock), lock.reading(wait=False):
        pass
    release.set()
    for t in threads:
        t.join(5)


@pytest.fixture
async def hnsw_service(tmp_path: Path):
    svc = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    await data(svc, "assign")
    await data(svc, "create_collection", collection="h", dimension=DIM, metric="l2",
               index="hnsw")  # fmt: skip
    vectors = np.random.default_rng(3).standard_normal((300, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(300)]
    await data(svc, "upsert", {"vectors": vectors}, collection="h", ids=ids,
               metadata=[{"even": i % 2 == 0} for i in range(300)])  # fmt: skip
    coll = svc.registry.open(TENANT).collection("h")
    coll.flush_index()  # everything in the graph: the fresh buffer is empty
    yield svc, vectors
    await svc.release_all()


def query_frame(vectors: np.ndarray, **header: object):
    wire = encode_frame(
        {"op": "query", "rid": 5, "tenant": TENANT, "epoch": 3, "collection": "h",
         "top_k": 5, **header},
        {"queries": vectors},
    )  # fmt: skip
    return decode_frame(wire)


async def test_a_small_query_is_answered_on_the_loop_with_the_threads_answer(
    hnsw_service,
) -> None:
    svc, vectors = hnsw_service
    frame = query_frame(vectors[7:9])
    quick = svc._quick_query(TENANT, frame)
    assert quick is not None, "a loaded HNSW collection answers on the loop"
    threaded = await asyncio.to_thread(
        lambda: svc.registry.open(TENANT).collection("h").query(vectors[7:9], 5, False, False)
    )
    assert quick[0]["results"] == threaded[0]
    assert [r["ids"][0] for r in quick[0]["results"]] == ["v7", "v8"]
    header, _ = await data(svc, "query", {"queries": vectors[7:9]}, collection="h", top_k=5)
    assert header["results"] == threaded[0]


@pytest.mark.parametrize(
    "extra",
    [
        {"filter": {"even": True}},  # a filter scans every row's metadata
        {"top_k": 1000},  # past the quick bound
        {"ef_search": 4096},
    ],
)
async def test_heavier_queries_go_to_a_thread(hnsw_service, extra: dict) -> None:
    svc, vectors = hnsw_service
    frame = query_frame(vectors[:1], **extra)
    assert svc._quick_query(TENANT, frame) is None
    header, _ = await data(svc, "query", {"queries": vectors[:1]}, collection="h",
                           **{"top_k": 5, **extra})  # fmt: skip
    assert header["ok"] is True and header["results"][0]["ids"]


async def test_a_query_never_blocks_the_loop_while_a_writer_holds_the_graph(
    hnsw_service,
) -> None:
    svc, vectors = hnsw_service
    graph_lock = svc.registry.open(TENANT).collection("h").index._graph_lock
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:  # as the background graph insertion does, for 0.3 s
        with graph_lock.writing():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(5)
    assert svc._quick_query(TENANT, query_frame(vectors[3:4])) is None
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    asking = asyncio.create_task(
        data(svc, "query", {"queries": vectors[3:4]}, collection="h", top_k=5)
    )
    await asyncio.sleep(0.3)
    assert not asking.done()  # waiting, in a thread, for the writer
    assert ticks >= 10  # while the loop kept running
    release.set()
    header, _ = await asking
    ticking.cancel()
    thread.join(5)
    assert header["results"][0]["ids"][0] == "v3"


async def test_a_small_flat_collection_is_scanned_on_the_loop_and_a_large_one_in_a_thread(
    tmp_path: Path,
) -> None:
    """A flat scan of a few thousand floats costs less than the hop to a thread: it is
    answered on the loop, with the thread's answer; past INLINE_MAX_FLAT_FLOATS it is not."""
    svc = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    await data(svc, "assign")
    rng = np.random.default_rng(4)
    sizes = {"small": 200, "large": INLINE_MAX_FLAT_FLOATS // DIM + 1}
    for name, rows in sizes.items():
        await data(svc, "create_collection", collection=name, dimension=DIM, metric="l2",
                   index="flat")  # fmt: skip
        vectors = rng.standard_normal((rows, DIM)).astype(np.float32)
        ids = [f"{name}{i}" for i in range(rows)]
        await data(svc, "upsert", {"vectors": vectors}, collection=name, ids=ids,
                   metadata=[{"i": i} for i in range(rows)])  # fmt: skip
        frame = query_frame(vectors[5:6], collection=name, include_metadata=True)
        quick = svc._quick_query(TENANT, frame)
        header, _ = await data(svc, "query", {"queries": vectors[5:6]}, collection=name,
                               top_k=5, include_metadata=True)  # fmt: skip
        assert header["results"][0]["ids"][0] == f"{name}5"
        if name == "small":
            assert quick is not None, "a small flat collection answers on the loop"
            assert quick[0]["results"] == header["results"]
        else:
            assert quick is None, "a large flat scan goes to a thread"
    await svc.release_all()
