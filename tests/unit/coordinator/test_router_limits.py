"""VP_CLIENT_MAX_FILTERED_RUNNING: a client's filtered requests sent to its worker at once."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from tests.unit.coordinator.test_hub import SECRET, hello
from tests.unit.coordinator.test_router_deadline import FakeWorker
from workers.protocol import Op


@pytest.mark.parametrize("in_flight", [1, 3])
async def test_filtered_requests_beyond_the_setting_wait_in_the_coordinator(
    in_flight: int,
) -> None:
    hub = WorkerHub(SECRET)
    port = await hub.start("127.0.0.1", 0)
    router = TenantRouter(hub, 1.0, filtered_in_flight=in_flight)
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            await ws.send(hello(SECRET))
            await asyncio.wait_for(ws.recv(), 5)  # welcome
            fake = FakeWorker(ws)  # never answers a query
            serving = asyncio.create_task(fake.serve())
            args = {"collection": "c", "filter": {"n": {"$gt": 1}}}
            calls = [asyncio.create_task(router.call("acme", Op.QUERY, args)) for _ in range(5)]
            await asyncio.sleep(0.3)
            assert len(fake.of(Op.QUERY)) == in_flight  # the others wait their turn
            # Another client's filtered request is not held behind acme's.
            other = asyncio.create_task(router.call("other", Op.QUERY, args))
            await asyncio.sleep(0.2)
            assert len(fake.of(Op.QUERY)) == in_flight + 1
            for call in [*calls, other]:
                with pytest.raises(TenantUnavailable):
                    await call
            serving.cancel()
    finally:
        await hub.close()
