"""Fencing: a silent worker's process is killed before its tenants are handed on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from coordinator.fencing import fence_local_worker, has_exited, is_local_worker
from coordinator.hub import WorkerHub, WorkerLink
from workers.protocol import PROTOCOL_VERSION, Op, encode_frame

SECRET = "s3cret-worker-token"


@pytest.fixture
async def hub() -> AsyncIterator[WorkerHub]:
    h = WorkerHub(SECRET)
    h.port = await h.start("127.0.0.1", 0)  # type: ignore[attr-defined]
    yield h
    await h.close()


async def joined(hub: WorkerHub, ws: object) -> WorkerLink:
    hello = {
        "op": Op.HELLO.value,
        "rid": 1,
        "worker_id": "w1",
        "secret": SECRET,
        "pid": 4242,
        "protocol": PROTOCOL_VERSION,
    }
    await ws.send(encode_frame(hello))  # type: ignore[attr-defined]
    await asyncio.wait_for(ws.recv(), 5)  # type: ignore[attr-defined]
    space = {"hot": {"free_bytes": 10, "total_bytes": 100, "min_free_bytes": 50, "x": "no"}}
    beat = {"op": Op.HEARTBEAT.value, "rid": 0, "seq": 1, "load": {}, "space": space}
    await ws.send(encode_frame(beat))  # type: ignore[attr-defined]
    for _ in range(100):
        if hub.live() and hub.live()[0].space:
            return hub.live()[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no heartbeat arrived")


async def test_the_fence_comes_before_the_tenants_are_handed_on(hub: WorkerHub) -> None:
    order: list[str] = []

    async def fencer(link: WorkerLink) -> bool:
        order.append(f"fence {link.worker_id} {link.pid}")
        return True

    async def on_leave(link: WorkerLink) -> None:
        order.append("hand on")

    hub.fencer = fencer
    hub.on_leave.append(on_leave)
    async with connect(f"ws://127.0.0.1:{hub.port}", compression=None) as ws:  # type: ignore[attr-defined]
        link = await joined(hub, ws)
        assert link.space == {"hot": {"free_bytes": 10, "total_bytes": 100, "min_free_bytes": 50}}
        await hub.mark_down(link, "missed heartbeats for 3.1s")
    assert order == ["fence w1 4242", "hand on"]
    assert hub.fences == 1 and hub.live() == []
    assert "fenced" in hub.departed["w1"].why


@pytest.mark.parametrize("outcome", ["refused", "raised"])
async def test_a_failed_fence_still_takes_the_worker_out(hub: WorkerHub, outcome: str) -> None:
    async def fencer(link: WorkerLink) -> bool:
        if outcome == "raised":
            raise RuntimeError("boom")
        return False

    hub.fencer = fencer
    async with connect(f"ws://127.0.0.1:{hub.port}", compression=None) as ws:  # type: ignore[attr-defined]
        link = await joined(hub, ws)
        await hub.mark_down(link, "missed heartbeats")
    assert hub.fences == 0 and hub.live() == [] and hub.losses == 1


def spawn_lookalike(worker_id: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "vectorpanda", "worker"]
    return subprocess.Popen(argv, env={**os.environ, "VP_WORKER_ID": worker_id})


async def test_only_that_local_worker_is_killed() -> None:
    proc = spawn_lookalike("w7")
    try:
        await asyncio.sleep(0.2)  # exec'd, so /proc shows its argv
        assert is_local_worker(proc.pid, "w7")
        assert not is_local_worker(proc.pid, "w8")
        assert not is_local_worker(os.getpid(), "w7")
        assert not await fence_local_worker(WorkerLink("w8", proc.pid, None))  # type: ignore[arg-type]
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGSTOP)
        assert await fence_local_worker(WorkerLink("w7", proc.pid, None))  # type: ignore[arg-type]
        assert has_exited(proc.pid)  # a zombie until reaped: its files are closed already
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
