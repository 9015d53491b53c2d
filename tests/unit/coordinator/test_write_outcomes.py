"""The router never answers a write whose outcome it does not know as a plain error.

Scripted workers dial the real hub over WebSocket: a write frame that reached a
worker which then vanished (or fell silent) may have been applied, so it is
retried on the new owner and answered with that retry's result, or answered
OutcomeUnknown; a refusal of the retry (busy, quota) must not pass for "nothing
was written". Reads keep the plain TenantUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
from websockets.asyncio.client import connect

from coordinator import router as router_module
from coordinator.errors import OutcomeUnknown, TenantUnavailable, WorkerRefused
from coordinator.hub import WorkerHub
from coordinator.router import TenantRouter
from workers.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    Op,
    decode_frame,
    encode_frame,
    reply_error,
    reply_ok,
)

SECRET = "s3cret-worker-token"
VECTORS = {"vectors": np.zeros((1, 2), dtype=np.float32)}
UPSERT = {"collection": "c", "ids": ["a"], "metadata": [None]}


class ScriptedWorker:
    """Answers ASSIGN (unless ``die_on_assign``); data frames as ``behaviour`` says:
    ok, busy, vanish, silent."""

    def __init__(self, worker_id: str, behaviour: str) -> None:
        self.worker_id, self.behaviour = worker_id, behaviour
        self.received: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self, port: int, joined: asyncio.Event) -> None:
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            hello = {"op": Op.HELLO.value, "rid": 1, "worker_id": self.worker_id}
            hello |= {"secret": SECRET, "pid": 1, "protocol": PROTOCOL_VERSION}
            await ws.send(encode_frame(hello))
            await ws.recv()
            joined.set()
            async for raw in ws:
                assert isinstance(raw, bytes)
                frame = decode_frame(raw)
                rid = int(frame.header["rid"])
                if frame.op == Op.ASSIGN and self.behaviour == "die_on_assign":
                    return
                if frame.op == Op.ASSIGN:
                    await ws.send(encode_frame(reply_ok(rid)))
                    continue
                self.received.append(frame.op)
                if self.behaviour == "vanish":
                    return  # the socket closes with the frame unanswered
                if self.behaviour == "silent":
                    continue
                if self.behaviour == "busy":
                    await ws.send(encode_frame(reply_error(rid, ErrorCode.BUSY, "busy")))
                    continue
                await ws.send(encode_frame(reply_ok(rid, {"upserted": 1, "results": []})))


@pytest.fixture
async def hub() -> AsyncIterator[WorkerHub]:
    h = WorkerHub(SECRET)
    h.port = await h.start("127.0.0.1", 0)  # type: ignore[attr-defined]
    yield h
    await h.close()


async def join(hub: WorkerHub, *workers: ScriptedWorker) -> None:
    for worker in workers:
        joined = asyncio.Event()
        worker.task = asyncio.create_task(worker.run(hub.port, joined))  # type: ignore[attr-defined]
        await asyncio.wait_for(joined.wait(), 5)


async def stop(*workers: ScriptedWorker) -> None:
    for worker in workers:
        assert worker.task is not None
        worker.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker.task


def owner_first(router: TenantRouter, owner: str, tenant: str = "t1") -> None:
    """Pin the tenant to ``owner`` so the scripted first attempt lands there."""
    router._assignments[tenant] = router_module.Assignment(owner, 1)


async def test_lost_write_is_retried_and_answered_with_the_retry(hub: WorkerHub) -> None:
    first, second = ScriptedWorker("w1", "vanish"), ScriptedWorker("w2", "ok")
    await join(hub, first, second)
    router = TenantRouter(hub, timeout_s=5)
    owner_first(router, "w1")
    reply = await router.call("t1", Op.UPSERT, UPSERT, VECTORS)
    assert reply.header["ok"] is True
    assert first.received == [Op.UPSERT] and second.received == [Op.UPSERT]
    await stop(first, second)


async def test_refused_retry_after_a_lost_write_is_outcome_unknown(hub: WorkerHub) -> None:
    # The 429: the first owner stored the write and died; the retry met back-pressure.
    first, second = ScriptedWorker("w1", "vanish"), ScriptedWorker("w2", "busy")
    await join(hub, first, second)
    router = TenantRouter(hub, timeout_s=5)
    owner_first(router, "w1")
    with pytest.raises(OutcomeUnknown):
        await router.call("t1", Op.UPSERT, UPSERT, VECTORS)
    await stop(first, second)


async def test_lost_write_with_no_worker_left_is_outcome_unknown(
    hub: WorkerHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_module, "WAIT_FOR_WORKER_S", 0.2)
    only = ScriptedWorker("w1", "vanish")
    await join(hub, only)
    # With no worker left each call waits for one until its deadline: keep that short.
    router = TenantRouter(hub, timeout_s=1)
    with pytest.raises(OutcomeUnknown):
        await router.call("t1", Op.UPSERT, UPSERT, VECTORS)
    # Nothing was sent this time: no worker at all is the plain "nothing written" 503.
    with pytest.raises(TenantUnavailable):
        await router.call("t1", Op.UPSERT, UPSERT, VECTORS)
    await stop(only)


async def test_silent_worker_write_is_unknown_but_read_is_unavailable(hub: WorkerHub) -> None:
    only = ScriptedWorker("w1", "silent")
    await join(hub, only)
    router = TenantRouter(hub, timeout_s=0.5)
    with pytest.raises(OutcomeUnknown):
        await router.call("t1", Op.UPSERT, UPSERT, VECTORS)
    with pytest.raises(TenantUnavailable) as read:
        await router.call("t1", Op.QUERY, {"collection": "c", "top_k": 1})
    assert not isinstance(read.value, OutcomeUnknown)
    await stop(only)


async def test_lost_non_idempotent_write_is_outcome_unknown(hub: WorkerHub) -> None:
    first, second = ScriptedWorker("w1", "vanish"), ScriptedWorker("w2", "ok")
    await join(hub, first, second)
    router = TenantRouter(hub, timeout_s=5)
    owner_first(router, "w1")
    with pytest.raises(OutcomeUnknown):
        await router.call("t1", Op.CREATE_COLLECTION, {"collection": "c"}, retry=False)
    assert second.received == []  # never sent twice
    await stop(first, second)


async def test_plain_back_pressure_is_busy_and_nothing_else(hub: WorkerHub) -> None:
    only = ScriptedWorker("w1", "busy")
    await join(hub, only)
    router = TenantRouter(hub, timeout_s=5)
    with pytest.raises(WorkerRefused) as refused:
        await router.call("t1", Op.UPSERT, UPSERT, VECTORS)
    assert refused.value.code == ErrorCode.BUSY
    await stop(only)


async def test_owner_dying_during_assign_is_retried_not_an_internal_error(hub: WorkerHub) -> None:
    first, second = ScriptedWorker("w1", "die_on_assign"), ScriptedWorker("w2", "ok")
    await join(hub, first, second)
    router = TenantRouter(hub, timeout_s=5)
    # Rendezvous hashing decides who is asked first; try tenants until w1 is.
    tenant = next(
        t
        for t in (f"t{i}" for i in range(100))
        if router_module.choose_owner(t, [router_module.Candidate(w, 1.0) for w in ("w1", "w2")])
        == "w1"
    )
    reply = await router.call(tenant, Op.UPSERT, UPSERT, VECTORS)
    assert reply.header["ok"] is True and second.received == [Op.UPSERT]
    await stop(first, second)
