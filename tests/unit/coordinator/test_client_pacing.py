"""Pacing a client's expensive requests while other clients are served (admission.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coordinator.admission import (
    MAX_REST_S,
    ClientAdmission,
    RecentClients,
    SharedRecentClients,
)


def paced(contended: bool = True, share: float = 0.25) -> ClientAdmission:
    return ClientAdmission(1, 8, share=share, free_s=0.005, contended=lambda _c: contended)


def test_the_rest_is_the_excess_over_the_free_time_times_the_others_share() -> None:
    admission = paced()
    assert admission.rest_after("a", 0.025) == pytest.approx(0.06)  # 20 ms over, 3x
    assert admission.rest_after("a", 0.004) == 0.0  # a cheap request never rests
    assert admission.rest_after("a", 60.0) == MAX_REST_S


def test_no_rest_for_a_client_alone_or_without_a_share() -> None:
    assert paced(contended=False).rest_after("a", 1.0) == 0.0
    assert paced(share=1.0).rest_after("a", 1.0) == 0.0
    with pytest.raises(ValueError):
        ClientAdmission(1, 1, share=0.0)


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_paced_client_s_waiting_request_starts_after_the_rest() -> None:
    admission = paced(share=0.5)
    assert await admission.enter("a")
    waiter = asyncio.ensure_future(admission.enter("a"))
    await _turns()
    admission.leave("a", busy_s=0.025)  # rests 20 ms, holding its slot
    await _turns()
    assert not waiter.done()
    assert admission.running("a") == 1
    assert await asyncio.wait_for(waiter, 5)
    admission.leave("a")
    assert admission.running("a") == 0


async def test_a_paced_client_s_next_request_waits_out_the_rest() -> None:
    admission = paced(share=0.5)
    assert await admission.enter("a")
    admission.leave("a", busy_s=0.025)
    assert admission.running("a") == 0
    later = asyncio.ensure_future(admission.enter("a"))
    await _turns()
    assert not later.done()
    assert await asyncio.wait_for(later, 5)
    admission.leave("a")


async def test_other_clients_are_not_held_by_a_resting_one() -> None:
    admission = paced(share=0.5)
    assert await admission.enter("a")
    admission.leave("a", busy_s=0.5)
    other = asyncio.ensure_future(admission.enter("b"))
    await _turns()
    assert other.done() and other.result()


async def test_unpaced_the_slot_passes_on_at_once() -> None:
    admission = paced(contended=False)
    assert await admission.enter("a")
    waiter = asyncio.ensure_future(admission.enter("a"))
    await _turns()
    admission.leave("a", busy_s=0.5)
    await _turns()
    assert waiter.done() and waiter.result()
    admission.leave("a")


async def test_a_request_cancelled_while_its_client_rests_gives_the_slot_on() -> None:
    admission = paced(share=0.5)
    assert await admission.enter("a")
    first = asyncio.ensure_future(admission.enter("a"))
    second = asyncio.ensure_future(admission.enter("a"))
    await _turns()
    admission.leave("a", busy_s=0.025)
    first.cancel()
    assert await asyncio.wait_for(second, 5)
    admission.leave("a")
    assert admission.running("a") == 0


def test_the_router_paces_a_client_only_while_another_was_served_within_the_window() -> None:
    from coordinator.hub import WorkerHub
    from coordinator.router import CONTENDED_WINDOW_S, TenantRouter

    now = [100.0]
    router = TenantRouter(
        WorkerHub("s" * 32), 1.0, recent_clients=RecentClients(CONTENDED_WINDOW_S, lambda: now[0])
    )
    _served_in_turn(router.recent_clients, now)


def test_coordinator_processes_share_who_was_served(tmp_path: Path) -> None:
    now = [100.0]
    board = tmp_path / "run" / "recent-clients"
    one, two = (SharedRecentClients(board, 1.0, lambda: now[0]) for _ in range(2))
    try:
        one.seen("a")
        assert not two.others("a")
        two.seen("b")  # b is served by the other process
        assert one.others("a") and one.others("b") and two.others("a")
        now[0] += 1.1
        one.seen("a")
        assert not two.others("a")  # b has gone quiet
    finally:
        one.close()
        two.close()
    alone = SharedRecentClients(tmp_path / "other-board", 1.0, lambda: now[0])
    try:
        _served_in_turn(alone, now)
    finally:
        alone.close()


def _served_in_turn(recent: RecentClients, now: list[float]) -> None:
    recent.seen("a")
    recent.seen("a")
    assert not recent.others("a")  # alone on the service
    recent.seen("b")
    assert recent.others("a") and recent.others("b")
    recent.seen("a")  # the most recent other client of "a" is still "b"
    assert recent.others("a")
    now[0] += recent.window_s + 0.1
    recent.seen("a")
    assert not recent.others("a")  # "b" has gone quiet
