"""TenantRouter and DataPlane against an in-memory hub: routing, lost frames, deadlines, metering.

No sockets: each fake link answers the frames it is sent the way a worker would (or
loses them, or never answers), so these tests exercise only the coordinator's own
decisions, through the public methods the API and the services call.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from coordinator.dataplane import DataPlane, Limits
from coordinator.errors import OutcomeUnknown, TenantUnavailable, WorkerRefused
from coordinator.hub import WorkerGone
from coordinator.router import TenantRouter
from workers.protocol import ErrorCode, Frame, Op, reply_error, reply_ok

TIMEOUT_S = 0.3
SILENT = object()  # an answer that never comes
LOST = object()  # the socket closes after the frame went out

Answer = Callable[[dict[str, Any], dict[str, np.ndarray] | None], Any]


def worker_answers(header: dict[str, Any], arrays: dict[str, np.ndarray] | None) -> Any:
    """What a healthy worker with an empty collection ``c`` answers."""
    op = header["op"]
    if op in (Op.ASSIGN, Op.RELEASE):
        return {}
    if op == Op.QUERY:
        assert arrays is not None
        n = len(arrays["queries"])
        if header.get("render"):
            body = b'{"matches":[]}' if header["render"] == "single" else b'{"results":[]}'
            return {"rendered": True}, {"body": np.frombuffer(body, dtype=np.uint8)}
        return {"results": [{"ids": ["a"], "scores": [0.5]} for _ in range(n)]}
    if op == Op.UPSERT:
        return {"upserted": len(header["ids"])}
    if op == Op.CREATE_COLLECTION:
        return {"collection": {"name": header["collection"]}}
    if op == Op.TENANT_SUMMARY:
        return {"tenant": header["tenant"], "location": "hot"}
    raise AssertionError(f"unexpected frame {op}")


class FakeLink:
    """One worker's link: records every frame and answers through ``answer``."""

    def __init__(self, hub: FakeHub, worker_id: str) -> None:
        self.hub = hub
        self.worker_id = worker_id
        self.alive = True
        self.held: dict[str, int] | None = None
        self.busy: dict[str, float] | None = None
        self.busy_at = 0.0
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        self.frames: list[dict[str, Any]] = []
        self.cancelled: list[int] = []
        self.answer: Answer = worker_answers

    async def request(
        self, rid: int, header: dict[str, Any], arrays: dict[str, np.ndarray] | None
    ) -> asyncio.Future[Frame]:
        if not self.alive:
            raise WorkerGone(self.worker_id)
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.frames.append(header)
        answer = self.answer(header, arrays)
        if answer is LOST:
            asyncio.get_running_loop().create_task(self.hub.lose(self))
        elif answer is not SILENT:
            reply, reply_arrays = answer if isinstance(answer, tuple) else (answer, {})
            if reply.get("ok") is False:  # already a whole error reply
                fut.set_result(Frame({**reply, "rid": rid}, reply_arrays))
            else:
                fut.set_result(Frame(reply_ok(rid, reply), reply_arrays))
            self.pending.pop(rid)
        return fut

    def cancel(self, rid: int) -> None:
        self.pending.pop(rid, None)
        self.cancelled.append(rid)

    def fail_pending(self) -> None:
        self.alive = False
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(WorkerGone(self.worker_id))
        self.pending.clear()

    def ops(self, *ops: Op) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["op"] in ops]


class FakeHub:
    """The part of WorkerHub the router uses, with links joined and lost by the test."""

    def __init__(self) -> None:
        self.links: dict[str, FakeLink] = {}
        self.on_leave: list[Any] = []
        self.on_held: list[Any] = []
        self.changed = asyncio.Event()
        self._rids = itertools.count(1)

    def live(self) -> list[FakeLink]:
        return [link for link in self.links.values() if link.alive]

    def next_rid(self) -> int:
        return next(self._rids)

    def join(self, worker_id: str) -> FakeLink:
        link = FakeLink(self, worker_id)
        self.links[worker_id] = link
        self.changed.set()
        return link

    async def lose(self, link: FakeLink) -> None:
        """The worker's socket closed: what WorkerHub does on a drop."""
        link.fail_pending()
        self.links.pop(link.worker_id, None)
        for listener in self.on_leave:
            await listener(link)
        self.changed.set()


class Meter:
    """A metering hook that remembers what it was told."""

    def __init__(self) -> None:
        self.queries: dict[str, int] = {}
        self.upserted: dict[str, int] = {}

    def record_queries(self, client_id: str, n: int) -> None:
        self.queries[client_id] = self.queries.get(client_id, 0) + n

    def record_upserted(self, client_id: str, n: int) -> None:
        self.upserted[client_id] = self.upserted.get(client_id, 0) + n


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def router(hub: FakeHub) -> TenantRouter:
    return TenantRouter(hub, TIMEOUT_S)  # type: ignore[arg-type]


def owner_of(router: TenantRouter, tenant: str) -> str:
    return router.assignments[tenant].worker_id


def queries(n: int) -> np.ndarray:
    return np.ones((n, 4), dtype=np.float32)


async def test_each_tenant_is_assigned_once_and_its_frames_go_to_its_owner(hub, router) -> None:
    links = [hub.join("w1"), hub.join("w2")]
    assert router.any_worker_live()
    tenants = [f"t{i}" for i in range(8)]
    for _ in range(3):
        for tenant in tenants:
            reply = await router.call(
                tenant, Op.QUERY, {"collection": "c"}, {"queries": queries(1)}
            )
            assert reply.header["ok"]
    for tenant in tenants:
        owner = hub.links[owner_of(router, tenant)]
        assigns = [f for link in links for f in link.ops(Op.ASSIGN) if f["tenant"] == tenant]
        assert len(assigns) == 1 and assigns[0] in owner.frames
        data = [f for link in links for f in link.ops(Op.QUERY) if f["tenant"] == tenant]
        assert len(data) == 3 and all(f in owner.frames for f in data)
        assert {f["epoch"] for f in data} == {assigns[0]["epoch"]}
    assert {owner_of(router, t) for t in tenants} == {"w1", "w2"}  # both take a share


async def test_no_worker_is_a_503_not_a_hang(hub, router) -> None:
    assert not router.any_worker_live()
    with pytest.raises(TenantUnavailable):
        await router.call("t", Op.QUERY, {"collection": "c"}, {"queries": queries(1)})


async def test_a_refusal_is_the_workers_code_and_message(hub, router) -> None:
    link = hub.join("w1")
    link.answer = lambda h, a: (
        reply_error(0, ErrorCode.NOT_FOUND, "no collection c") if h["op"] == Op.QUERY else {}
    )
    with pytest.raises(WorkerRefused) as refused:
        await router.call("t", Op.QUERY, {"collection": "c"}, {"queries": queries(1)})
    assert refused.value.code == ErrorCode.NOT_FOUND and "no collection" in refused.value.message


async def test_a_read_whose_frame_is_lost_is_answered_by_the_new_owner(hub, router) -> None:
    hub.join("w1")
    hub.join("w2")
    await router.call("t", Op.QUERY, {"collection": "c"}, {"queries": queries(1)})
    first = hub.links[owner_of(router, "t")]
    first.answer = lambda h, a: LOST if h["op"] == Op.QUERY else {}
    reply = await router.call("t", Op.QUERY, {"collection": "c"}, {"queries": queries(2)})
    assert len(reply.header["results"]) == 2
    second = hub.links[owner_of(router, "t")]
    assert second is not first and not first.alive
    assert [f["tenant"] for f in second.ops(Op.ASSIGN)] == ["t"]
    assert len(second.ops(Op.QUERY)) == 1


async def test_an_idempotent_write_whose_frame_is_lost_is_retried_once(hub, router) -> None:
    hub.join("w1")
    hub.join("w2")
    plane = DataPlane(router, Limits())
    await plane.upsert("t", "c", ["a"], queries(1), [None])
    first = hub.links[owner_of(router, "t")]
    first.answer = lambda h, a: LOST if h["op"] == Op.UPSERT else {}
    assert await plane.upsert("t", "c", ["a", "b"], queries(2), [None, None]) == 2
    second = hub.links[owner_of(router, "t")]
    assert second is not first and len(second.ops(Op.UPSERT)) == 1


async def test_a_write_not_to_be_repeated_whose_frame_is_lost_is_outcome_unknown(
    hub, router
) -> None:
    hub.join("w1")
    hub.join("w2")
    plane = DataPlane(router, Limits())
    await router.call("t", Op.QUERY, {"collection": "c"}, {"queries": queries(1)})
    first = hub.links[owner_of(router, "t")]
    first.answer = lambda h, a: LOST if h["op"] == Op.CREATE_COLLECTION else {}
    with pytest.raises(OutcomeUnknown):
        await plane.create_collection("t", "c", 4, "cosine", "flat", None)
    others = [link for link in hub.live() if link is not first]
    assert all(not link.ops(Op.CREATE_COLLECTION) for link in others)  # not sent twice


async def test_a_read_past_its_deadline_is_unavailable_and_cancelled_on_the_worker(
    hub, router
) -> None:
    link = hub.join("w1")
    link.answer = lambda h, a: SILENT if h["op"] == Op.QUERY else {}
    with pytest.raises(TenantUnavailable):
        await router.call("t", Op.QUERY, {"collection": "c"}, {"queries": queries(1)})
    (sent,) = link.ops(Op.QUERY)
    assert 0 < sent["deadline_ms"] <= TIMEOUT_S * 1000
    assert len(link.cancelled) == 1 and not link.pending
    assert owner_of(router, "t") == "w1"  # a slow answer is not a lost worker


async def test_a_write_past_its_deadline_is_outcome_unknown(hub, router) -> None:
    link = hub.join("w1")
    link.answer = lambda h, a: SILENT if h["op"] == Op.UPSERT else {}
    with pytest.raises(OutcomeUnknown):
        await DataPlane(router, Limits()).upsert("t", "c", ["a"], queries(1), [None])
    assert len(link.ops(Op.UPSERT)) == 1 and len(link.cancelled) == 1


async def test_call_any_asks_a_live_worker_without_assigning_the_tenant(hub, router) -> None:
    link = hub.join("w1")
    reply = await router.call_any("t", Op.TENANT_SUMMARY)
    assert reply.header["location"] == "hot"
    assert not link.ops(Op.ASSIGN) and "t" not in router.assignments
    link.answer = lambda h, a: reply_error(0, ErrorCode.INTERNAL, "disk on fire")
    with pytest.raises(WorkerRefused):
        await router.call_any("t", Op.TENANT_SUMMARY)


async def test_metering_counts_what_the_workers_answered_and_nothing_else(hub, router) -> None:
    link = hub.join("w1")
    meter = Meter()
    plane = DataPlane(router, Limits(), metering=meter)
    await plane.upsert("t", "c", ["a", "b", "c"], queries(3), [None] * 3)
    matches = await plane.query(
        "t",
        "c",
        queries(2),
        1,
        include_metadata=False,
        include_values=False,
        filter=None,
        ef_search=None,
    )
    assert [[m.id for m in row] for row in matches] == [["a"], ["a"]]
    body = await plane.query_json(
        "t",
        "c",
        queries(1),
        1,
        include_metadata=False,
        include_values=False,
        filter=None,
        ef_search=None,
        single=True,
    )
    assert body == b'{"matches":[]}'
    assert meter.upserted == {"t": 3} and meter.queries == {"t": 3}
    # Refused, or never answered: nothing is counted.
    link.answer = lambda h, a: reply_error(0, ErrorCode.NOT_FOUND, "no collection")
    with pytest.raises(WorkerRefused):
        await plane.upsert("t", "c", ["d"], queries(1), [None])
    link.answer = lambda h, a: SILENT
    with pytest.raises(TenantUnavailable):
        await plane.query(
            "t",
            "c",
            queries(4),
            1,
            include_metadata=False,
            include_values=False,
            filter=None,
            ef_search=None,
        )
    assert meter.upserted == {"t": 3} and meter.queries == {"t": 3}
    # Without a hook the same calls simply go unmetered.
    link.answer = worker_answers
    assert await DataPlane(router, Limits()).upsert("t", "c", ["e"], queries(1), [None]) == 1
    assert meter.upserted == {"t": 3}
