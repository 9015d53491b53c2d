"""The worker hub: only workers presenting the shared secret may join."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from coordinator.hub import WorkerGone, WorkerHub
from workers.protocol import PROTOCOL_VERSION, Op, decode_frame, encode_frame

SECRET = "s3cret-worker-token"


def hello(secret: str, protocol: int = PROTOCOL_VERSION) -> bytes:
    return encode_frame(
        {
            "op": Op.HELLO.value,
            "rid": 1,
            "worker_id": "w9",
            "secret": secret,
            "pid": 1,
            "protocol": protocol,
        }
    )


@pytest.fixture
async def hub() -> WorkerHub:
    h = WorkerHub(SECRET)
    h.port = await h.start("127.0.0.1", 0)  # type: ignore[attr-defined]
    yield h  # type: ignore[misc]
    await h.close()


@pytest.mark.parametrize(
    "first_frame",
    [
        hello("wrong"),
        hello(""),
        hello(SECRET, protocol=999),
        b"garbage",
        encode_frame({"op": "heartbeat"}),
    ],
)
async def test_socket_without_the_secret_is_closed(hub: WorkerHub, first_frame: bytes) -> None:
    async with connect(f"ws://127.0.0.1:{hub.port}", compression=None) as ws:  # type: ignore[attr-defined]
        await ws.send(first_frame)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert hub.live() == []


async def test_worker_with_the_secret_joins_and_heartbeats_are_acknowledged(hub: WorkerHub) -> None:
    async with connect(f"ws://127.0.0.1:{hub.port}", compression=None) as ws:  # type: ignore[attr-defined]
        await ws.send(hello(SECRET))
        welcome = decode_frame(await asyncio.wait_for(ws.recv(), 5))
        assert welcome.op == Op.WELCOME and welcome.header["ok"] is True
        assert [link.worker_id for link in hub.live()] == ["w9"]
        await ws.send(
            encode_frame({"op": Op.HEARTBEAT.value, "rid": 0, "seq": 7, "load": {"tenants": 3}})
        )
        ack = decode_frame(await asyncio.wait_for(ws.recv(), 5))
        assert ack.op == Op.HEARTBEAT_ACK and ack.header["seq"] == 7
        assert hub.live()[0].load == {"tenants": 3}
    for _ in range(50):
        if not hub.live():
            break
        await asyncio.sleep(0.02)
    assert hub.live() == [] and "w9" in hub.departed


async def test_a_reply_resolves_its_request_with_its_arrays(hub: WorkerHub) -> None:
    async with connect(f"ws://127.0.0.1:{hub.port}", compression=None) as ws:  # type: ignore[attr-defined]
        await ws.send(hello(SECRET))
        await asyncio.wait_for(ws.recv(), 5)  # WELCOME
        link = hub.live()[0]
        vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
        futures = [
            await link.request(rid, {"op": Op.QUERY.value, "n": rid}, {"q": vectors * rid})
            for rid in (11, 12)
        ]
        for _ in futures:
            frame = decode_frame(await asyncio.wait_for(ws.recv(), 5))
            assert frame.header["n"] == frame.rid
            np.testing.assert_array_equal(frame.arrays["q"], vectors * frame.rid)
            reply = {"op": Op.QUERY.value, "rid": frame.rid, "ok": True, "n": frame.rid}
            await ws.send(encode_frame(reply, {"body": frame.arrays["q"] + 1}))
        replies = await asyncio.wait_for(asyncio.gather(*futures), 5)
        assert [r.header["n"] for r in replies] == [11, 12]
        np.testing.assert_array_equal(replies[1].arrays["body"], vectors * 12 + 1)
        await ws.send(b"not a frame")  # a malformed frame is dropped, the link stays up
        await ws.send(encode_frame({"op": Op.HEARTBEAT.value, "rid": 0, "seq": 8}))
        ack = decode_frame(await asyncio.wait_for(ws.recv(), 5))
        assert ack.header["seq"] == 8 and link.alive
    for _ in range(50):
        if not link.alive:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(WorkerGone):  # the socket closed: nothing is sent, nothing waits
        await link.request(13, {"op": Op.QUERY.value}, None)
    assert link.pending == {}


async def test_queries_sent_together_all_reach_the_worker_in_order(hub: WorkerHub) -> None:
    async with connect(f"ws://127.0.0.1:{hub.port}", compression=None) as ws:  # type: ignore[attr-defined]
        await ws.send(hello(SECRET))
        await asyncio.wait_for(ws.recv(), 5)  # WELCOME
        link = hub.live()[0]
        # In one step of the loop, with others in flight: queued, then written together.
        futures = [await link.request(rid, {"op": Op.QUERY.value}, None) for rid in range(1, 17)]
        upsert = await link.request(17, {"op": Op.UPSERT.value}, None)  # written at once
        rids = [decode_frame(await asyncio.wait_for(ws.recv(), 5)).rid for _ in range(17)]
        assert rids == list(range(1, 18))
        for rid in reversed(rids):
            await ws.send(encode_frame({"op": Op.QUERY.value, "rid": rid, "ok": True}))
        replies = await asyncio.wait_for(asyncio.gather(*futures, upsert), 5)
        assert [r.rid for r in replies] == list(range(1, 18))
        assert link.pending == {}
