"""The worker dials in, says hello, heartbeats, answers by rid, and reconnects after a drop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

from workers.main import run_worker
from workers.protocol import PROTOCOL_VERSION, Frame, decode_frame, encode_frame
from workers.tenant_store import TenantStore


class FakeCoordinator:
    """A hub that records what workers send and lets the test drive the connection."""

    def __init__(self, welcome: bool = True) -> None:
        self.welcome = welcome
        self.hellos: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.connection: ServerConnection | None = None

    async def handler(self, ws: ServerConnection) -> None:
        hello = decode_frame(await ws.recv())  # type: ignore[arg-type]
        await self.hellos.put(hello.header)
        if not self.welcome:
            await ws.send(encode_frame({"op": "reply", "rid": 0, "ok": False}))
            return
        await ws.send(encode_frame({"op": "welcome", "rid": 0, "ok": True}))
        self.connection = ws
        async for raw in ws:
            frame = decode_frame(raw)  # type: ignore[arg-type]
            if frame.op == "heartbeat":
                # as the real hub does: the ack renews the worker's ownership lease
                ack = {"op": "heartbeat_ack", "rid": 0, "seq": frame.header.get("seq")}
                await ws.send(encode_frame(ack))
            await self.frames.put(frame)

    async def request(self, rid: int, header: dict[str, Any], arrays=None) -> Frame:
        assert self.connection is not None
        await self.connection.send(encode_frame({"rid": rid, **header}, arrays))
        while True:
            frame = await asyncio.wait_for(self.frames.get(), 5)
            if frame.op == "reply" and frame.rid == rid:
                return frame


async def test_worker_session_end_to_end(tmp_path: Path) -> None:
    hub = FakeCoordinator()
    hot = tmp_path / "hot"
    async with serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(f"ws://127.0.0.1:{port}", "s3cret", "w-1", hot, 1 << 20, 0.05, stop)
        )
        hello = await asyncio.wait_for(hub.hellos.get(), 5)
        assert hello["op"] == "hello"
        assert (hello["worker_id"], hello["secret"]) == ("w-1", "s3cret")
        assert hello["pid"] == os.getpid() and hello["protocol"] == PROTOCOL_VERSION

        beat = await asyncio.wait_for(hub.frames.get(), 5)
        assert beat.op == "heartbeat"
        assert set(beat.header["load"]) == {
            "tenants",
            "memory_bytes",
            "queue_depth",
            "tenant_threads",
            "wal_fsyncs_total",
            "wal_fsync_seconds_total",
            "wal_fsync_max_ms",
        }
        assert beat.header["busy"] == {}  # thread-seconds per tenant: none owned yet

        data = {"tenant": "t1", "epoch": 5}
        assert (await hub.request(1, {"op": "assign", **data})).header["ok"] is True
        reply = await hub.request(2, {"op": "create_collection", **data, "collection": "c",
                                      "dimension": 2, "metric": "l2", "index": "flat"})  # fmt: skip
        assert reply.header["collection"]["name"] == "c"
        vectors = np.array([[0, 0], [5, 5]], np.float32)
        reply = await hub.request(
            3,
            {"op": "upsert", **data, "collection": "c", "ids": ["a", "b"], "metadata": None},
            {"vectors": vectors},
        )
        assert reply.header["upserted"] == 2
        # Many concurrent requests each get their own reply, matched by rid.
        assert hub.connection is not None
        for rid in range(100, 120):
            query = {"op": "query", **data, "collection": "c", "top_k": 1, "include_values": True,
                     "include_metadata": False, "filter": None, "ef_search": None}  # fmt: skip
            point = np.array([[rid % 2 * 5, rid % 2 * 5]], np.float32)
            await hub.connection.send(encode_frame({"rid": rid, **query}, {"queries": point}))
        replies: dict[int, Frame] = {}
        while len(replies) < 20:
            frame = await asyncio.wait_for(hub.frames.get(), 5)
            if frame.op == "reply":
                replies[frame.rid] = frame
        for rid, frame in replies.items():
            assert frame.header["results"][0]["ids"] == ["b" if rid % 2 else "a"]
            assert frame.arrays["values"].tobytes() == vectors[rid % 2 : rid % 2 + 1].tobytes()

        beat = await asyncio.wait_for(hub.frames.get(), 5)
        assert beat.op == "heartbeat" and beat.header["load"]["tenants"] == 1
        # The create and the upsert held one of t1's request threads for a while.
        assert set(beat.header["busy"]) == {"t1"} and beat.header["busy"]["t1"] >= 0
        assert beat.header["load"]["tenant_threads"] >= 1

        # Drop the connection: the worker lets go of its tenants and dials again.
        await hub.connection.close()
        again = await asyncio.wait_for(hub.hellos.get(), 5)
        assert again["worker_id"] == "w-1"
        TenantStore.open(hot, "t1", 1 << 20).close()  # lock was released
        reply = await hub.request(9, {"op": "list_collections", **data})
        assert reply.header["error"]["code"] == "not_owner"

        stop.set()
        await asyncio.wait_for(worker, 5)


async def test_refused_worker_backs_off_and_retries(tmp_path: Path) -> None:
    hub = FakeCoordinator(welcome=False)
    async with serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(f"ws://127.0.0.1:{port}", "bad", "w-2", tmp_path, 1 << 20, 1.0, stop)
        )
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(hub.hellos.get(), 5)
        first = loop.time()
        await asyncio.wait_for(hub.hellos.get(), 5)
        await asyncio.wait_for(hub.hellos.get(), 5)
        assert loop.time() - first >= 0.1 + 0.2 - 0.05  # backoff doubles
        stop.set()
        await asyncio.wait_for(worker, 5)


async def test_stop_while_coordinator_is_down_returns_promptly(tmp_path: Path) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker("ws://127.0.0.1:9", "s", "w-3", tmp_path, 1 << 20, 1.0, stop)
    )
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(worker, 5)


async def test_frames_are_refused_once_the_lease_lapses(tmp_path: Path) -> None:
    """Without heartbeat acks (a coordinator that wrote us off), data frames are refused."""

    class SilentCoordinator(FakeCoordinator):
        async def handler(self, ws: ServerConnection) -> None:
            await self.hellos.put(decode_frame(await ws.recv()).header)  # type: ignore[arg-type]
            await ws.send(encode_frame({"op": "welcome", "rid": 0, "ok": True}))
            self.connection = ws
            async for raw in ws:  # never acknowledges a heartbeat
                await self.frames.put(decode_frame(raw))  # type: ignore[arg-type]

    hub = SilentCoordinator()
    async with serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(
                f"ws://127.0.0.1:{port}", "s3cret", "w-1", tmp_path / "hot", 1 << 20, 0.05, stop
            )
        )
        await asyncio.wait_for(hub.hellos.get(), 5)
        await asyncio.sleep(0.3)  # > 2.5 heartbeat intervals without an ack
        reply = await hub.request(1, {"op": "usage", "tenant": "t1", "epoch": 1})
        assert reply.header["ok"] is False
        assert reply.header["error"]["code"] == "not_owner"
        assert "lease" in reply.header["error"]["message"]
        assert not (tmp_path / "hot" / "t1").exists()
        stop.set()
        await asyncio.wait_for(worker, 10)


async def test_lease_expiry_releases_every_tenant_and_the_next_hello_says_so(
    tmp_path: Path,
) -> None:
    """A lapsed lease unlocks the tenant's files at once; heartbeats and the next hello tell."""

    class StallingCoordinator(FakeCoordinator):
        acking = True

        async def handler(self, ws: ServerConnection) -> None:
            await self.hellos.put(decode_frame(await ws.recv()).header)  # type: ignore[arg-type]
            await ws.send(encode_frame({"op": "welcome", "rid": 0, "ok": True}))
            self.connection = ws
            async for raw in ws:
                frame = decode_frame(raw)  # type: ignore[arg-type]
                if frame.op == "heartbeat" and self.acking:
                    ack = {"op": "heartbeat_ack", "rid": 0, "seq": frame.header.get("seq")}
                    await ws.send(encode_frame(ack))
                await self.frames.put(frame)

    hub = StallingCoordinator()
    hot = tmp_path / "hot"
    async with serve(hub.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(f"ws://127.0.0.1:{port}", "s3cret", "w-1", hot, 1 << 20, 0.05, stop)
        )
        first = await asyncio.wait_for(hub.hellos.get(), 5)
        assert first["held"] == {} and first["released_on_expiry"] == []
        reply = await hub.request(1, {"op": "assign", "tenant": "t1", "epoch": 7})
        assert reply.header["ok"] is True

        async def next_heartbeat() -> dict[str, Any]:
            while True:
                frame = await asyncio.wait_for(hub.frames.get(), 5)
                if frame.op == "heartbeat":
                    return frame.header

        while (await next_heartbeat())["held"] != {"t1": 7}:
            pass
        hub.acking = False  # the coordinator stalls: no acks, the lease runs out
        while (await next_heartbeat())["held"] != {}:
            pass
        # the directory lock is free while the worker is still connected
        TenantStore.open(hot, "t1", 1 << 20).close()
        assert hub.connection is not None
        await hub.connection.close()  # the coordinator drops it; the worker reconnects
        again = await asyncio.wait_for(hub.hellos.get(), 10)
        assert again["held"] == {} and again["released_on_expiry"] == ["t1"]
        stop.set()
        await asyncio.wait_for(worker, 10)
