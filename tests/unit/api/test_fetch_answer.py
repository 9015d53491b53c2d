"""A fetch's answer is rendered in parts with the event loop served between them
(api/routes/vectors.py, ``fetch_answer``): the same bytes as one orjson call, one
Content-Length (api/routing.py, ``PartsResponse``)."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.routes.vectors import FLOATS_PER_TURN, fetch_answer
from api.routing import JSON_OPTIONS, PartsResponse
from coordinator.dataplane import FetchedVector

RNG = np.random.default_rng(29)


def _found(count: int, dim: int) -> dict[str, FetchedVector]:
    return {
        f'id-{i}-é"\\': FetchedVector(
            RNG.standard_normal(dim).astype(np.float32), {"n": i} if i % 2 else None
        )
        for i in range(count)
    }


def _whole(found: dict[str, FetchedVector]) -> bytes:
    """The answer as the route rendered it before: one orjson call."""
    vectors = {vid: {"values": v.values, "metadata": v.metadata or {}} for vid, v in found.items()}
    return orjson.dumps({"vectors": vectors}, option=JSON_OPTIONS)


@pytest.mark.parametrize("count, dim", [(0, 4), (1, 4), (5, 4), (1000, 8), (200, 384), (40, 4096)])
async def test_the_parts_are_the_whole_answer(count: int, dim: int) -> None:
    found = _found(count, dim)
    parts = await fetch_answer(found)
    assert b"".join(parts) == _whole(found)
    per_part = -(-FLOATS_PER_TURN // dim)  # vectors until a part reaches FLOATS_PER_TURN
    assert len(parts) == max(1, -(-count // per_part))


async def test_other_work_runs_between_the_parts() -> None:
    found = _found(8 * FLOATS_PER_TURN // 512, 512)  # 8 parts
    ticks: list[int] = []
    rendering = asyncio.ensure_future(fetch_answer(found))
    while not rendering.done():
        ticks.append(len(ticks))
        await asyncio.sleep(0)
    assert len(await rendering) == 8
    assert len(ticks) >= 7  # the loop ran this task between every two parts


async def test_the_response_is_the_plain_responses_bytes_and_headers() -> None:
    found = _found(30, 2048)
    parts = await fetch_answer(found)
    assert len(parts) > 1

    async def in_parts(request: Request) -> PartsResponse:
        return PartsResponse(parts)

    async def whole(request: Request) -> Response:
        return Response(_whole(found), media_type="application/json")  # json_response's

    app = Starlette(routes=[Route("/parts", in_parts), Route("/whole", whole)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        a, b = await client.get("/parts"), await client.get("/whole")
    assert a.status_code == b.status_code == 200
    assert a.headers.multi_items() == b.headers.multi_items()
    assert a.content == b.content == b"".join(parts)
    assert int(a.headers["content-length"]) == len(a.content)
