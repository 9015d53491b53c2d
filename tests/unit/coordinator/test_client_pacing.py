"""Pacing a client's expensive requests while other clients are served (admission.py)."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.admission import MAX_REST_S, ClientAdmission


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


def test_the_router_paces_a_client_only_while_another_was_served_within_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import coordinator.router as router_module
    from coordinator.hub import WorkerHub

    now = [100.0]
    monkeypatch.setattr(router_module.time, "monotonic", lambda: now[0])
    router = router_module.TenantRouter(WorkerHub("s" * 32), 1.0)
    router._enter("a")
    router._enter("a")
    assert not router._others_served("a")  # alone on the service
    router._enter("b")
    assert router._others_served("a") and router._others_served("b")
    router._enter("a")  # the most recent other tenant of "a" is still "b"
    assert router._others_served("a")
    now[0] += router_module.CONTENDED_WINDOW_S + 0.1
    router._enter("a")
    assert not router._others_served("a")  # "b" has gone quiet
