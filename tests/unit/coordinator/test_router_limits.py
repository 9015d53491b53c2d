"""Router limits: a client's filtered requests in flight (VP_CLIENT_MAX_FILTERED_RUNNING),
and new tenants kept away from a worker a saturating tenant keeps busy."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from tests.unit.coordinator.test_hub import SECRET, hello
from tests.unit.coordinator.test_router_deadline import FakeWorker
from workers.protocol import PROTOCOL_VERSION, Op, encode_frame


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


def _hello(worker_id: str) -> bytes:
    frame = {"op": Op.HELLO.value, "rid": 1, "worker_id": worker_id, "secret": SECRET,
             "pid": 1, "protocol": PROTOCOL_VERSION}  # fmt: skip
    return encode_frame(frame)


async def test_new_tenants_are_not_placed_beside_a_tenant_that_keeps_its_worker_busy() -> None:
    hub = WorkerHub(SECRET)
    port = await hub.start("127.0.0.1", 0)
    router = TenantRouter(hub, 2.0)
    fakes: dict[str, FakeWorker] = {}
    serving = []
    try:
        async with (
            connect(f"ws://127.0.0.1:{port}", compression=None) as ws1,
            connect(f"ws://127.0.0.1:{port}", compression=None) as ws2,
        ):
            for name, ws in (("w1", ws1), ("w2", ws2)):
                await ws.send(_hello(name))
                await asyncio.wait_for(ws.recv(), 5)  # welcome
                fakes[name] = FakeWorker(ws)
                fakes[name].answer = {"results": []}
                serving.append(asyncio.create_task(fakes[name].serve()))
            # The rebalancer's last look saw "hot" keep a thread of w1 busy.
            busy = {"w1": {"hot": 1.0}, "w2": {}}
            assert router.cost_watch.plan({"w1": {}, "w2": {}}, busy, now=0.0) is None
            tenants = [f"t{i}" for i in range(12)]
            for tenant in tenants:
                await router.call(tenant, Op.QUERY, {"collection": "c"})
            assert {router.assignments[t].worker_id for t in tenants} == {"w2"}
            # Once it is quiet again, w1 takes new tenants as before.
            router.cost_watch.plan({"w1": {}, "w2": {}}, {"w1": {}, "w2": {}}, now=10.0)
            later = [f"u{i}" for i in range(12)]
            for tenant in later:
                await router.call(tenant, Op.QUERY, {"collection": "c"})
            assert "w1" in {router.assignments[t].worker_id for t in later}
            for task in serving:
                task.cancel()
    finally:
        await hub.close()


async def test_what_a_filtered_request_cost_before_routing_counts_towards_its_pacing() -> None:
    hub = WorkerHub(SECRET)
    port = await hub.start("127.0.0.1", 0)
    router = TenantRouter(hub, 5.0)
    try:
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            await ws.send(hello(SECRET))
            await asyncio.wait_for(ws.recv(), 5)  # welcome
            fake = FakeWorker(ws)
            fake.answer = {"results": []}
            serving = asyncio.create_task(fake.serve())
            args = {"collection": "c", "filter": {"n": {"$gt": 1}}}
            router.recent_clients.seen("other")  # another client is being served
            # A quick round trip, after a large body's parse of 0.3 s (api/query_desk.py):
            # the client rests three times the excess over the free 5 ms, about 0.9 s.
            await router.call("acme", Op.QUERY, args, spent_s=0.3)
            router.recent_clients.seen("other")
            following = asyncio.create_task(router.call("acme", Op.QUERY, args))
            await asyncio.sleep(0.2)
            assert len(fake.of(Op.QUERY)) == 1  # still resting
            await asyncio.wait_for(following, 5)
            assert len(fake.of(Op.QUERY)) == 2
            serving.cancel()
    finally:
        await hub.close()
