"""The worker's fair share of request threads: per-tenant cap, round robin, bounded queue."""

from __future__ import annotations

import asyncio

import pytest

from workers.errors import StoreError
from workers.fair_share import FairShare
from workers.protocol import ErrorCode


async def _hold(share: FairShare, tenant: str, order: list[str], release: asyncio.Event) -> None:
    async with share.slot(tenant):
        order.append(tenant)
        await release.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_tenant_never_holds_more_than_its_share() -> None:
    share = FairShare(slots=4, per_tenant=2)
    order: list[str] = []
    release = asyncio.Event()
    noisy = [asyncio.create_task(_hold(share, "a", order, release)) for _ in range(10)]
    await _settle()
    assert order == ["a", "a"] and share.running == {"a": 2} and share.waiting("a") == 8
    # Two threads are still free: another tenant starts at once, behind none of a's queue.
    quiet = asyncio.create_task(_hold(share, "b", order, release))
    await _settle()
    assert order[-1] == "b" and share.running == {"a": 2, "b": 1}
    release.set()
    await asyncio.gather(*noisy, quiet)
    assert share.running == {} and share.waiting("a") == 0


async def test_freed_threads_go_round_robin_across_waiting_tenants() -> None:
    share = FairShare(slots=1, per_tenant=1)
    order: list[str] = []

    async def one(tenant: str) -> None:
        async with share.slot(tenant):
            order.append(tenant)
            await asyncio.sleep(0)

    first = asyncio.Event()
    blocker = asyncio.create_task(_hold(share, "a", [], first))
    await _settle()
    tasks = [asyncio.create_task(one("a")) for _ in range(3)]
    await _settle()
    tasks += [asyncio.create_task(one("b")), asyncio.create_task(one("c"))]
    await _settle()
    first.set()
    await asyncio.gather(blocker, *tasks)
    # a queued three before b and c arrived, yet b and c each get the next turns.
    assert order == ["a", "b", "c", "a", "a"], order


async def test_a_full_tenant_queue_answers_busy_for_that_tenant_only() -> None:
    share = FairShare(slots=2, per_tenant=1, queue_per_tenant=2)
    release = asyncio.Event()
    order: list[str] = []
    held = [asyncio.create_task(_hold(share, "a", order, release)) for _ in range(3)]
    await _settle()
    with pytest.raises(StoreError) as refused:
        async with share.slot("a"):
            pass
    assert refused.value.code == ErrorCode.BUSY
    async with share.slot("b"):  # the other tenant is not refused, nor kept waiting
        pass
    release.set()
    await asyncio.gather(*held)


async def test_a_cancelled_waiter_leaves_the_queue_and_its_slot_is_reused() -> None:
    share = FairShare(slots=1, per_tenant=1)
    release = asyncio.Event()
    order: list[str] = []
    blocker = asyncio.create_task(_hold(share, "a", order, release))
    await _settle()
    waiter = asyncio.create_task(_hold(share, "b", order, release))
    await _settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert share.waiting("b") == 0
    release.set()
    await blocker
    async with share.slot("c"):
        assert share.running == {"c": 1}
    assert order == ["a"]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_busy_time_counts_thread_seconds_held_running_ones_included() -> None:
    clock = _Clock()
    share = FairShare(slots=4, per_tenant=2, clock=clock)
    order: list[str] = []
    first, second = asyncio.Event(), asyncio.Event()
    a1 = asyncio.create_task(_hold(share, "a", order, first))
    a2 = asyncio.create_task(_hold(share, "a", order, second))
    b = asyncio.create_task(_hold(share, "b", order, first))
    await _settle()
    clock.now += 2.0
    first.set()  # one of a's and b's finish after 2 s
    await asyncio.gather(a1, b)
    clock.now += 3.0  # a's second request still runs
    assert share.busy_seconds({"a", "b"}) == {"a": pytest.approx(7.0), "b": pytest.approx(2.0)}
    second.set()
    await a2
    clock.now += 10.0  # idle time adds nothing
    assert share.busy_seconds({"a", "b"}) == {"a": pytest.approx(7.0), "b": pytest.approx(2.0)}
    # A tenant the worker no longer owns is forgotten once idle: it would start again at 0.
    assert share.busy_seconds({"a"}) == {"a": pytest.approx(7.0)}
    assert share.busy_seconds({"a", "b"}) == {"a": pytest.approx(7.0)}


async def test_waiting_for_a_thread_is_not_busy_time() -> None:
    clock = _Clock()
    share = FairShare(slots=1, per_tenant=1, clock=clock)
    order: list[str] = []
    release = asyncio.Event()
    running = asyncio.create_task(_hold(share, "a", order, release))
    queued = asyncio.create_task(_hold(share, "b", order, release))
    await _settle()
    clock.now += 4.0
    assert share.busy_seconds({"a", "b"}) == {"a": pytest.approx(4.0)}
    release.set()
    await asyncio.gather(running, queued)


def test_the_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="positive"):
        FairShare(slots=0)
    with pytest.raises(ValueError, match="queue_per_tenant"):
        FairShare(queue_per_tenant=-1)
    assert FairShare(slots=2, per_tenant=5).per_tenant == 2
