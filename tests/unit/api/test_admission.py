"""The admission gate: refusals before the body is read, and a bounded line per client."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from api.admission import AdmissionGate, ClientAdmission
from coordinator.accounts.model import Principal
from coordinator.rate_limit import RateLimiter

GOOD = "vp_0123456789abcdef_" + "g" * 43
PAUSED = "vp_fedcba9876543210_" + "p" * 43


def principal(status: str = "active", tier: str = "free") -> Principal:
    return Principal(
        client_id="c1",
        key_id="k1",
        scopes=frozenset({"read"}),
        digest="d",
        tier=tier,
        status=status,
    )


async def authenticate(token: str) -> Principal | None:
    return {GOOD: principal(), PAUSED: principal("paused")}.get(token)


class App:
    """The rest of the stack: records what reached it and whether the body was read."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.hold = hold

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls.append(scope)
        if self.hold is not None:
            await self.hold.wait()
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(gate: AdmissionGate, token: str | None, path: str = "/v1/collections") -> tuple:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    scope = {"type": "http", "path": path, "headers": headers, "state": {"request_id": "r1"}}
    read = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        read.append(True)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gate(scope, receive, send)
    status = sent[0]["status"]
    body = orjson.loads(sent[1]["body"])
    return status, body, dict(sent[0]["headers"]), bool(read), scope


def gate(app: App, limiter: RateLimiter | None = None, running: int = 4, waiting: int = 4):
    return AdmissionGate(
        app,
        authenticate=authenticate,
        rate_limiter=limiter,
        admission=ClientAdmission(running, waiting),
    )


@pytest.mark.parametrize("token", [None, "nonsense", "vp_0123456789abcdef_" + "x" * 43])
async def test_bad_credentials_are_refused_before_the_body_is_read(token: str | None) -> None:
    app = App()
    status, body, _, read, _ = await call(gate(app), token)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert body["error"]["request_id"] == "r1"
    assert not read and not app.calls


async def test_a_paused_client_is_refused_before_the_body_is_read() -> None:
    app = App()
    status, body, _, read, scope = await call(gate(app), PAUSED)
    assert status == 423 and body["error"]["code"] == "paused"
    assert not read and not app.calls and scope["state"]["client_id"] == "c1"


async def test_over_the_rate_is_refused_with_retry_after_and_no_body_read() -> None:
    app = App()
    g = gate(app, RateLimiter(clock=lambda: 0.0))
    burst = 50  # the free tier's
    for _ in range(burst):
        assert (await call(g, GOOD))[0] == 200
    status, body, headers, read, _ = await call(g, GOOD)
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers[b"retry-after"]) >= 1 and not read
    assert len(app.calls) == burst


async def test_admitted_requests_carry_their_principal() -> None:
    app = App()
    status, _, _, read, scope = await call(gate(app), GOOD)
    assert status == 200 and read and scope["state"]["principal"].client_id == "c1"


async def test_other_paths_pass_untouched() -> None:
    app = App()
    status, _, _, _, _ = await call(gate(app), None, path="/admin/v1/clients")
    assert status == 200 and len(app.calls) == 1


async def test_a_clients_backlog_is_bounded_and_waits_on_itself() -> None:
    hold = asyncio.Event()
    app = App(hold)
    g = gate(app, running=2, waiting=3)
    tasks = [asyncio.create_task(call(g, GOOD)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert len(app.calls) == 2  # two running, three waiting their turn
    status, body, headers, read, _ = await call(g, GOOD)  # the sixth: no room
    assert status == 429 and body["error"]["code"] == "rate_limited" and not read
    assert headers[b"retry-after"] == b"1"
    hold.set()
    results = await asyncio.gather(*tasks)
    assert [r[0] for r in results] == [200] * 5 and len(app.calls) == 5
    assert g.admission.running("c1") == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    admission = ClientAdmission(max_running=1, max_waiting=2)
    assert await admission.enter("c")
    waiter = asyncio.create_task(admission.enter("c"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    admission.leave("c")
    assert admission.running("c") == 0
    assert await admission.enter("c")  # the slot is free again
    admission.leave("c")


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    admission = ClientAdmission(max_running=1, max_waiting=2)
    assert await admission.enter("c")
    first = asyncio.create_task(admission.enter("c"))
    second = asyncio.create_task(admission.enter("c"))
    await asyncio.sleep(0)
    admission.leave("c")  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second  # the slot reached the next in line
    admission.leave("c")
    assert admission.running("c") == 0


async def test_a_waiter_cancelled_as_the_slot_is_freed_leaves_cleanly() -> None:
    # A deadline (wait_for) cancels the waiter; before its task runs again, the running
    # request leaves and skips the cancelled turn. The waiter must raise CancelledError
    # (the caller's TimeoutError), never a ValueError from a turn no longer queued.
    admission = ClientAdmission(max_running=1, max_waiting=2)
    assert await admission.enter("c")
    waiter = asyncio.create_task(admission.enter("c"))
    await asyncio.sleep(0)
    waiter.cancel()
    admission.leave("c")
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.running("c") == 0
    assert await admission.enter("c")
    admission.leave("c")


async def test_a_key_refused_again_and_again_is_held_for_the_delay() -> None:
    from api.admission import REFUSAL_BURST

    app = App()
    g = AdmissionGate(
        app,
        authenticate=authenticate,
        rate_limiter=None,
        admission=ClientAdmission(1, 0),
        refusal_delay_s=0.2,
    )
    loop = asyncio.get_running_loop()
    unknown = "vp_0123456789abcdef_" + "x" * 43
    started = loop.time()
    for _ in range(REFUSAL_BURST):  # an occasional mistake is answered at once
        assert (await call(g, unknown))[0] == 401
    assert loop.time() - started < 0.2 * REFUSAL_BURST / 2
    started = loop.time()
    status, *_ = await call(g, unknown)  # a flood is held
    assert status == 401 and loop.time() - started >= 0.2
    started = loop.time()
    other = "vp_fedcba9876543211_" + "y" * 43
    assert (await call(g, other))[0] == 401  # another key is not punished for it
    assert (await call(g, PAUSED))[0] == 423  # a paused client is told at once
    assert loop.time() - started < 0.2


async def test_a_key_used_outside_its_allowed_cidrs_is_forbidden_before_the_body() -> None:
    from dataclasses import replace

    from api.client_address import trusted_proxy_networks
    from coordinator.accounts.key_policy import networks_of

    restricted = "vp_00000000000000cc_" + "c" * 43
    allowed = replace(principal(), networks=networks_of(("10.0.0.0/8",)))

    async def auth(token: str) -> Principal | None:
        return allowed if token == restricted else None

    app = App()
    g = AdmissionGate(
        app,
        authenticate=auth,
        rate_limiter=None,
        admission=ClientAdmission(4, 4),
        trusted_proxies=trusted_proxy_networks("127.0.0.1/32"),
    )

    async def from_peer(peer: str, **headers: str) -> tuple[int, dict[str, Any], bool]:
        raw = [(b"authorization", f"Bearer {restricted}".encode())]
        raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
        scope = {
            "type": "http",
            "path": "/v1/collections",
            "headers": raw,
            "client": (peer, 40000),
            "state": {"request_id": "r1"},
        }
        sent: list[dict[str, Any]] = []
        read: list[bool] = []

        async def receive() -> dict[str, Any]:
            read.append(True)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await g(scope, receive, send)
        return sent[0]["status"], orjson.loads(sent[1]["body"]), bool(read)

    assert (await from_peer("10.1.2.3"))[0] == 200
    status, body, read = await from_peer("192.0.2.1")
    assert status == 403 and body["error"]["code"] == "forbidden" and not read
    assert "allowed_cidrs" in body["error"]["message"]
    # An untrusted peer cannot claim an allowed address with proxy headers...
    assert (await from_peer("192.0.2.1", x_real_ip="10.0.0.1", x_forwarded_for="10.0.0.1"))[
        0
    ] == 403
    # ...a trusted proxy can.
    assert (await from_peer("127.0.0.1", x_real_ip="10.0.0.1"))[0] == 200
    assert (await from_peer("127.0.0.1", x_real_ip="192.0.2.1"))[0] == 403
