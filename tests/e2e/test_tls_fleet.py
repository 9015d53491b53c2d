"""The fleet through nginx: TLS 1.3 only, HSTS, redirects, nothing internal exposed."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import RunningFleet
from workers.protocol import PROTOCOL_VERSION, Op, encode_frame

pytestmark = pytest.mark.e2e


def _port(url: str) -> int:
    return int(urlsplit(url).port or 0)


def _handshake(fleet: RunningFleet, ctx: ssl.SSLContext) -> str | None:
    address = ("127.0.0.1", _port(fleet.https_url))
    with (
        socket.create_connection(address, 5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.version()


def test_https_negotiates_tls13(fleet: RunningFleet) -> None:
    assert _handshake(fleet, fleet.tls()) == "TLSv1.3"
    with fleet.https() as c:
        r = c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_a_tls12_only_client_is_refused(fleet: RunningFleet) -> None:
    ctx = fleet.tls()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(fleet, ctx)


def test_plain_http_redirects_to_https(fleet: RunningFleet) -> None:
    r = httpx.get(f"{fleet.http_url}/v1/collections?x=1", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == f"{fleet.https_url}/v1/collections?x=1"
    # nothing is served over plain HTTP, errors included
    r = httpx.post(f"{fleet.http_url}/admin/v1/clients", json={}, follow_redirects=False)
    assert r.status_code == 301


def test_hsts_and_request_id_on_every_response(fleet: RunningFleet) -> None:
    with fleet.https() as c:
        for r in (c.get("/healthz"), c.get("/v1/collections"), c.get("/metrics")):
            hsts = r.headers.get("strict-transport-security", "")
            assert "max-age=63072000" in hsts and "includeSubDomains" in hsts, r
            assert r.headers.get("x-content-type-options") == "nosniff"
            assert len(r.headers.get("x-request-id", "")) >= 8
            assert "nginx/" not in r.headers.get("server", "")  # no version banner


def test_metrics_are_internal_only(fleet: RunningFleet) -> None:
    with fleet.https() as c:
        for path in ("/metrics", "/metrics/", "/metrics?x=1"):
            r = c.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found"
            assert "vectorpanda_" not in r.text
    direct = httpx.get(f"{fleet.api_url}/metrics")  # the internal address serves them
    assert direct.status_code == 200 and "vectorpanda_http_requests_total" in direct.text


def test_the_worker_hub_is_not_reachable_through_nginx(fleet: RunningFleet) -> None:
    hub_port = int(fleet.info["hub_port"])
    hello = encode_frame(
        {
            "op": Op.HELLO.value,
            "rid": 1,
            "worker_id": "intruder",
            "secret": "x",
            "pid": 1,
            "protocol": PROTOCOL_VERSION,
        }
    )

    async def dial(url: str, **kw: object) -> None:
        async with connect(url, open_timeout=5, **kw) as ws:  # type: ignore[arg-type]
            await ws.send(hello)
            await ws.recv()

    # the hub does speak WebSocket on its own port, so a refusal below means something
    socket.create_connection(("127.0.0.1", hub_port), 2).close()
    for path in ("/", "/ws", "/hub", "/worker"):
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(dial(f"wss://localhost:{_port(fleet.https_url)}{path}", ssl=fleet.tls()))
        assert refused.value.response.status_code != 101
    # a Host header naming the hub does not steer nginx anywhere but the API
    with fleet.https() as c:
        r = c.get("/healthz", headers={"Host": f"127.0.0.1:{hub_port}"})
    assert r.json() == {"ok": True}
    conf = (fleet.runtime_dir / "nginx.conf").read_text()
    upstreams = re.findall(r"^\s*server\s+([^\s{;]+)[^;{]*;", conf, re.M)
    assert upstreams == [f"127.0.0.1:{_port(fleet.api_url)}"]
    assert set(re.findall(r"proxy_pass\s+(\S+);", conf)) == {"http://vectorpanda_coordinator"}
    assert str(hub_port) not in conf


def test_rabbitmq_is_not_reachable_through_nginx(fleet: RunningFleet) -> None:
    with fleet.https() as c:
        for path in ("/api/overview", "/api/whoami", "/#/queues"):
            r = c.get(path, headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found"  # the coordinator's answer
        r = c.get("/api/overview", headers={"Host": "127.0.0.1:15672"})
        assert r.status_code == 404
    conf = (fleet.runtime_dir / "nginx.conf").read_text()
    assert "5672" not in conf and "15672" not in conf


def test_full_client_walkthrough_over_https(fleet: RunningFleet) -> None:
    cid, key = fleet.new_client("walkthrough")
    with fleet.https(key) as c:
        r = c.post("/v1/collections", json={"name": "docs", "dimension": 3, "metric": "cosine"})
        assert r.status_code == 201, r.text
        vectors = [
            {"id": "a", "values": [0.1, 0.2, 0.3], "metadata": {"lang": "en"}},
            {"id": "b", "values": [0.3, 0.1, 0.0]},
        ]
        r = c.post("/v1/collections/docs/upsert", json={"vectors": vectors})
        assert r.status_code == 200 and r.json() == {"upserted": 2}, r.text
        r = c.post(
            "/v1/collections/docs/query",
            json={"vector": [0.1, 0.2, 0.3], "top_k": 2, "include_metadata": True},
        )
        assert r.status_code == 200, r.text
        matches = r.json()["matches"]
        assert [m["id"] for m in matches] == ["a", "b"]
        assert matches[0]["metadata"] == {"lang": "en"}
        assert abs(matches[0]["score"] - 1.0) < 1e-5
        r = c.get("/v1/collections/docs")
        assert r.json()["vector_count"] == 2
    with fleet.admin() as admin:
        assert admin.get(f"/admin/v1/clients/{cid}").status_code == 200
