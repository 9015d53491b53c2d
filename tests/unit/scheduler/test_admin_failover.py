"""VP_ADMIN_URL naming several coordinators: a call that cannot connect goes to the next."""

from __future__ import annotations

import httpx
import pytest

from scheduler.admin_client import AdminClient


async def test_a_refused_connection_moves_on_and_an_answer_is_never_replayed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.host}")
        if request.url.host == "down":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path.endswith("/pause"):
            return httpx.Response(500, json={"error": {"code": "internal"}})
        return httpx.Response(200, json={"clients": [], "snapshots": [{"date": "d"}]})

    admin = AdminClient("http://down:8080, http://up:8080/", "t", httpx.MockTransport(handler))
    try:
        assert await admin.clients() == []
        assert await admin.census_dates() == ["d"]  # the one that answered goes first now
        with pytest.raises(httpx.HTTPStatusError):
            await admin.pause("c1", "idle")  # an HTTP answer, even a 500: not sent again
    finally:
        await admin.close()
    assert seen == ["GET down", "GET up", "GET up", "POST up"]


async def test_every_coordinator_refusing_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    admin = AdminClient("http://a,http://b", "t", httpx.MockTransport(handler))
    with pytest.raises(httpx.ConnectError):
        await admin.clients()
    await admin.close()
