"""The router tells the worker its deadline, cancels what it gave up on, and passes costs on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from tests.unit.coordinator.test_hub import SECRET, hello
from workers.protocol import Frame, Op, decode_frame, encode_frame, reply_ok

TIMEOUT_S = 0.5


class FakeWorker:
    """A worker socket that accepts tenants and answers queries as a test tells it to."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.answer: dict[str, Any] | None = None  # None: never answer a query

    async def serve(self) -> None:
        async for raw in self.ws:
            assert isinstance(raw, bytes)
            frame = decode_frame(raw)
            self.frames.append(frame)
            if frame.op == Op.ASSIGN:
                await self.ws.send(encode_frame(reply_ok(frame.rid)))
            elif frame.op == Op.QUERY and self.answer is not None:
                await self.ws.send(encode_frame(reply_ok(frame.rid, self.answer)))

    def of(self, op: Op) -> list[Frame]:
        return [f for f in self.frames if f.op == op]


@pytest.fixture
async def worker() -> AsyncIterator[tuple[TenantRouter, FakeWorker]]:
    hub = WorkerHub(SECRET)
    port = await hub.start("127.0.0.1", 0)
    router = TenantRouter(hub, TIMEOUT_S)
    async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
        await ws.send(hello(SECRET))
        await asyncio.wait_for(ws.recv(), 5)  # welcome
        fake = FakeWorker(ws)
        serving = asyncio.create_task(fake.serve())
        yield router, fake
        serving.cancel()
    await hub.close()


async def test_a_query_carries_the_deadline_and_is_cancelled_when_it_passes(worker) -> None:
    router, fake = worker
    with pytest.raises(TenantUnavailable):
        await router.call("acme", Op.QUERY, {"collection": "c", "filter": {"n": 1}})
    await asyncio.sleep(0.1)  # the cancel frame is sent in the background
    (query,) = fake.of(Op.QUERY)
    assert 0 < query.header["deadline_ms"] <= TIMEOUT_S * 1000
    (cancel,) = fake.of(Op.CANCEL)
    assert cancel.header["cancel"] == query.rid


async def test_a_caller_that_goes_away_cancels_the_worker_side_work(worker) -> None:
    router, fake = worker
    call = asyncio.create_task(router.call("acme", Op.QUERY, {"collection": "c"}))
    await asyncio.sleep(0.2)
    call.cancel()  # what the API does when the HTTP client disconnects
    await asyncio.sleep(0.1)
    (query,) = fake.of(Op.QUERY)
    assert [f.header["cancel"] for f in fake.of(Op.CANCEL)] == [query.rid]


async def test_the_cost_a_worker_reports_is_charged_to_the_tenant(worker) -> None:
    router, fake = worker
    charged: list[tuple[str, int]] = []
    router.charge_cost = lambda tenant, cost: charged.append((tenant, cost))
    fake.answer = {"results": [], "cost": 50_200}
    await router.call("acme", Op.QUERY, {"collection": "c"})
    assert charged == [("acme", 50_200)]
    assert fake.of(Op.CANCEL) == []
