"""Micro-batching: queries answered together give each request exactly its own answer.

Concurrent quick queries to one collection share one FAISS search; every request
still gets the answer (ids, scores, metadata, values, rendered bytes), the refusal
and the cost it gets alone. Filtered or large queries are not batched and take their
usual way, and a small flat collection's are answered on the loop one by one, with the
same answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.collection import Collection
from workers.hnsw_index import HnswIndex
from workers.main import WorkerSession
from workers.maintenance import Maintenance
from workers.protocol import Frame, decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers.work_budget import WorkBudget

from .test_worker_service import TENANT, data

DIM = 16
ROWS = 400


@pytest.fixture(params=["l2", "cosine"])
async def service(tmp_path: Path, request: pytest.FixtureRequest):
    # nothing moves into the graph by itself: the fresh buffer stays as the test left it
    quiet = Maintenance(autostart=False)
    svc = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30, maintenance=quiet))
    await data(svc, "assign")
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(ROWS)]
    meta = [{"even": i % 2 == 0, "i": i} for i in range(ROWS)]
    for name, index in (("h", "hnsw"), ("f", "flat")):
        await data(svc, "create_collection", collection=name, dimension=DIM,
                   metric=request.param, index=index)  # fmt: skip
        await data(svc, "upsert", {"vectors": vectors}, collection=name, ids=ids, metadata=meta)
    svc.registry.open(TENANT).collection("h").flush_index()
    # a few more, left in the fresh buffer: the batch merges graph and fresh answers
    extra = rng.standard_normal((30, DIM)).astype(np.float32)
    await data(svc, "upsert", {"vectors": extra}, collection="h",
               ids=[f"x{i}" for i in range(30)], metadata=[{"even": True}] * 30)  # fmt: skip
    yield svc
    await svc.release_all()


def frame(rid: int, queries: np.ndarray, **header: Any) -> Frame:
    wire = encode_frame(
        {"op": "query", "rid": rid, "tenant": TENANT, "epoch": 3, "top_k": 5, **header},
        {"queries": queries},
    )
    return decode_frame(wire)


def searched(monkeypatch: pytest.MonkeyPatch, size: Callable[[list[np.ndarray]], int]) -> list[int]:
    """Each graph search's size (``size`` of the requests' query arrays), as it runs."""
    seen: list[int] = []
    original = HnswIndex.search_many

    def counted(
        self: HnswIndex, table: Any, stacked: Any, parts: list[np.ndarray], k: int, ef: Any
    ) -> Any:
        seen.append(size(parts))
        return original(self, table, stacked, parts, k, ef)

    monkeypatch.setattr(HnswIndex, "search_many", counted)
    return seen


def wire(reply: tuple[dict[str, Any], dict[str, np.ndarray]]) -> bytes:
    return encode_frame(*reply)


def mixed_frames() -> list[Frame]:
    rng = np.random.default_rng(9)
    frames = []
    shapes = [
        {"collection": "h"},
        {"collection": "h", "top_k": 3},
        {"collection": "h", "top_k": 10, "include_metadata": True},
        {"collection": "h", "include_values": True, "render": "single"},
        {"collection": "h", "ef_search": 32, "render": "batch"},
        {"collection": "h", "filter": {"even": True}},
        {"collection": "h", "filter": {}},
        {"collection": "f"},
        {"collection": "f", "filter": {"i": {"$lt": 100}}, "include_metadata": True},
        {"collection": "h", "top_k": 0},  # refused on its own
        {"collection": "nope"},
    ]
    rid = 100
    for _repeat in range(3):
        for shape in shapes:
            rid += 1
            count = 1 + (rid % 3)
            queries = rng.standard_normal((count, DIM)).astype(np.float32)
            frames.append(frame(rid, queries, **shape))
    return frames


async def answers_alone(svc: WorkerService, frames: list[Frame]) -> list[bytes]:
    return [wire(await svc.handle(f)) for f in frames]


async def answers_batched(svc: WorkerService, frames: list[Frame]) -> list[bytes]:
    batch = [(f, WorkBudget.from_header(f.header)) for f in frames]
    replies = svc.answer_now(batch)
    out = []
    for (f, budget), reply in zip(batch, replies, strict=True):
        out.append(wire(reply if reply is not None else await svc.handle(f, budget)))
    return out


async def test_batched_answers_equal_unbatched_ones(
    service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = mixed_frames()
    alone = await answers_alone(service, frames)
    searches = searched(monkeypatch, lambda parts: sum(len(p) for p in parts))
    batched = await answers_batched(service, frames)
    assert batched == alone
    # the quick ones (5 shapes x 3) share searches: one per (top_k, ef_search)
    assert len(searches) == 4
    assert sum(searches) == sum(
        len(f.arrays["queries"])
        for f in frames
        if f.header["collection"] == "h" and "filter" not in f.header and f.header["top_k"]
    )


async def test_a_batch_of_one_query_at_a_time_gives_the_same_answers(
    service: WorkerService,
) -> None:
    frames = mixed_frames()
    service.query_batch = 1
    assert await answers_batched(service, frames) == await answers_alone(service, frames)


async def test_each_request_keeps_its_own_budget_and_cost(service: WorkerService) -> None:
    q = np.ones((2, DIM), np.float32)
    frames = [frame(rid, q[: 1 + rid % 2], collection="h") for rid in (1, 3, 2)]
    budgets = [WorkBudget.from_header(f.header) for f in frames]
    budgets[1].cancel()  # the coordinator gave up on request 3 while it queued
    replies = service.answer_now(list(zip(frames, budgets, strict=True)))
    assert all(r is not None for r in replies)
    first, cancelled, third = (r[0] for r in replies if r is not None)
    assert first["ok"] and third["ok"]
    assert cancelled["error"] == {"code": "unavailable", "message": "the request was cancelled"}
    rows = ROWS + 30
    assert first["cost"] == 2 * rows and third["cost"] == rows
    assert "cost" not in cancelled
    alone, _ = await service.handle(frames[2])
    assert alone["cost"] == third["cost"]
    # the time spent searching on the loop counts as the tenant's busy time
    assert service.fair_share.busy_seconds({TENANT})[TENANT] > 0


@pytest.mark.parametrize(("count", "batch", "searches"), [(12, 32, [12]), (150, 8, [8] * 18 + [6])])
async def test_a_burst_of_frames_on_the_socket_is_answered_by_few_searches(
    service: WorkerService,
    monkeypatch: pytest.MonkeyPatch,
    count: int,
    batch: int,
    searches: list[int],
) -> None:
    """One search per batch of at most VP_WORKER_QUERY_BATCH queries; a turn of the
    batcher takes at most 4 searches' worth (at least 64 frames) before the socket
    is read again: 150 frames at 8 per search are turns of 64, 64 and 22."""
    service.query_batch = batch
    rng = np.random.default_rng(1)
    frames = [
        frame(
            i + 1, rng.standard_normal((1, DIM)).astype(np.float32), collection="h", render="single"
        )
        for i in range(count)
    ]
    expected = {f.rid: wire(await service.handle(f)) for f in frames}
    seen = searched(monkeypatch, len)

    class Socket:
        """The coordinator's side: every frame already received, replies collected."""

        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def __aiter__(self) -> Any:
            return self._frames()

        async def _frames(self) -> Any:
            for f in frames:
                yield encode_frame(f.header, f.arrays)

        async def send(self, data: bytes) -> None:
            self.sent.append(data)

    socket = Socket()
    session = WorkerSession(socket, service, 60.0)  # type: ignore[arg-type]
    session._lease_until = time.monotonic() + 600
    await session._receive()
    while len(socket.sent) < len(frames):
        await asyncio.sleep(0.01)
    got = {decode_frame(raw).rid: raw for raw in socket.sent}
    assert got == expected
    assert seen == searches
    assert not session._budgets  # every answered request let go of its budget


async def test_a_defect_in_a_batch_answers_internal_and_spares_the_rest(
    service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = np.ones((1, DIM), np.float32)
    frames = [frame(1, q, collection="h"), frame(2, q, collection="h", top_k=3)]
    original = Collection.query_many

    def broken(self: Collection, requests: Any, top_k: int, ef: Any) -> Any:
        if top_k == 3:
            raise RuntimeError("boom")
        return original(self, requests, top_k, ef)

    monkeypatch.setattr(Collection, "query_many", broken)
    replies = service.answer_now([(f, WorkBudget.from_header(f.header)) for f in frames])
    assert replies[0] is not None and replies[0][0]["ok"] is True
    assert replies[1] is not None
    assert replies[1][0]["error"] == {"code": "internal", "message": "internal error in worker"}


class _HeldSocket:
    """The coordinator's end, not reading: every send waits until ``release``."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.open = asyncio.Event()

    async def send(self, data: bytes) -> None:
        await self.open.wait()
        self.sent.append(data)


def _single(rid: int) -> bytes:
    q = np.random.default_rng(rid).standard_normal((1, DIM)).astype(np.float32)
    f = frame(rid, q, collection="h", render="single")
    return encode_frame(f.header, f.arrays)


async def test_no_turn_runs_while_a_turns_replies_wait_for_the_socket(
    service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies the socket cannot take at once hold the next turn back (backpressure):
    the queries that arrive meanwhile wait, then are answered, none lost."""
    searches = searched(monkeypatch, len)
    socket = _HeldSocket()
    session = WorkerSession(socket, service, 60.0)  # type: ignore[arg-type]
    session._lease_until = time.monotonic() + 600
    for rid in (1, 2):
        session._on_binary(_single(rid))
    for _ in range(5):
        await asyncio.sleep(0)
    assert searches == [2]  # one turn, its replies stuck in send
    for rid in (3, 4, 5):
        session._on_binary(_single(rid))
    for _ in range(5):
        await asyncio.sleep(0)
    assert searches == [2] and len(session._pending) == 3
    socket.open.set()
    while len(socket.sent) < 5:
        await asyncio.sleep(0.01)
    assert searches == [2, 3]
    assert sorted(decode_frame(raw).rid for raw in socket.sent) == [1, 2, 3, 4, 5]
    assert all(decode_frame(raw).header["ok"] for raw in socket.sent)
    assert not session._budgets


async def test_stopping_hands_the_queries_not_yet_taken_to_the_usual_way(
    service: WorkerService,
) -> None:
    socket = _HeldSocket()
    socket.open.set()
    session = WorkerSession(socket, service, 60.0)  # type: ignore[arg-type]
    session._lease_until = time.monotonic() + 600
    for rid in (1, 2, 3):
        session._on_binary(_single(rid))
    assert len(session._pending) == 3  # the turn has not run yet
    await session._stop_turns()
    assert not session._pending and session._turn_handle is None
    await asyncio.wait(set(session._tasks))
    assert sorted(decode_frame(raw).rid for raw in socket.sent) == [1, 2, 3]
    expected = {rid: wire(await service.handle(decode_frame(_single(rid)))) for rid in (1, 2, 3)}
    assert {decode_frame(raw).rid: raw for raw in socket.sent} == expected
    session._on_binary(_single(4))  # no turn after the stop
    assert session._turn_handle is None
