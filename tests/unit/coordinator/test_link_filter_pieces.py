"""The coordinator sends a filter's long lists in pieces only to a worker whose hello
said it takes them; any other worker gets the whole filter (workers/filter_pieces.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from coordinator.filter_pieces import piece_arrays, split_filter
from coordinator.hub import WorkerLink
from workers.filter_pieces import KEY
from workers.protocol import Frame, decode_frame

FILTER = {"color": {"$nin": [f"x{i}" for i in range(9000)]}, "n": {"$gte": 2}}


async def _sent_to(takes_pieces: bool) -> Frame:
    """The frame a worker (with or without pieces) receives for a query with pieces."""
    split, lists = split_filter(FILTER)
    places, arrays = piece_arrays(lists)
    header: dict[str, Any] = {"op": "query", "filter": orjson.Fragment(orjson.dumps(split))}
    header[KEY] = places
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def coordinator(socket: ServerConnection) -> None:
        link = WorkerLink("w1", 0, socket, filter_pieces=takes_pieces)
        await link.request(7, header, {"queries": np.ones((1, 3), np.float32), **arrays})
        sent.set_result(None)
        await socket.wait_closed()

    async with serve(coordinator, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}") as worker:
            raw = await asyncio.wait_for(worker.recv(), 10)
            await sent
    assert isinstance(raw, bytes)
    return decode_frame(raw)


@pytest.mark.parametrize("takes_pieces", [True, False])
async def test_pieces_go_only_to_a_worker_that_takes_them(takes_pieces: bool) -> None:
    frame = await _sent_to(takes_pieces)
    assert frame.rid == 7
    assert frame.arrays["queries"].shape == (1, 3)
    if takes_pieces:
        assert frame.header[KEY] == [[["color", "$nin"], 3]]
        assert frame.header["filter"] == {"color": {"$nin": []}, "n": {"$gte": 2}}
        assert sorted(frame.arrays) == ["fp0", "fp1", "fp2", "queries"]
    else:
        assert KEY not in frame.header
        assert frame.header["filter"] == FILTER
        assert list(frame.arrays) == ["queries"]
