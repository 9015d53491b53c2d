"""The rebalancer's memory of cost: busy threads from heartbeat counters, hysteresis, cooldown."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from coordinator.cost_watch import CostWatch, IsolationPolicy
from coordinator.hub import WorkerLink
from coordinator.placement import Move


def _link(worker: str, at: float, busy: dict[str, float] | None) -> Any:
    return cast(WorkerLink, SimpleNamespace(worker_id=worker, busy=busy, busy_at=at))


OWNERS = {"a": "w1", "b": "w1", "c": "w2"}


def test_busy_threads_are_busy_seconds_per_second() -> None:
    watch = CostWatch()
    first = [_link("w1", 10.0, {"a": 5.0, "b": 1.0}), _link("w2", 10.0, None)]
    assert watch.sample(first, OWNERS.get) == {"w1": {}, "w2": {}}  # no base yet
    later = [_link("w1", 20.0, {"a": 23.0, "b": 1.5, "new": 4.0}), _link("w2", 20.0, {})]
    busy = watch.sample(later, OWNERS.get)
    # a: 18 thread-seconds in 10 s = 1.8 threads; "new" has no base yet
    assert busy == {"w1": {"a": pytest.approx(1.8), "b": pytest.approx(0.05)}, "w2": {}}


def test_no_new_heartbeat_restarted_worker_or_moved_tenant_gives_no_share() -> None:
    watch = CostWatch()
    watch.sample([_link("w1", 10.0, {"a": 5.0})], OWNERS.get)
    assert watch.sample([_link("w1", 10.0, {"a": 9.0})], OWNERS.get) == {"w1": {}}
    assert watch.sample([_link("w1", 12.0, {"a": 1.0})], OWNERS.get) == {"w1": {}}  # went down
    assert watch.sample([_link("w1", 14.0, {"a": 3.0})], {"a": "w2"}.get) == {"w1": {}}  # moved
    assert watch.sample([_link("w1", 16.0, {"a": 5.0})], OWNERS.get) == {
        "w1": {"a": pytest.approx(1.0)}
    }


def test_a_tenant_must_saturate_twice_running_and_is_then_left_alone_for_the_cooldown() -> None:
    watch = CostWatch(IsolationPolicy(busy_threads=0.8, cooldown_s=60.0))
    # rates under the rate rebalancer's floor: only the busy time can call for a move
    rates = {"w1": {"a": 1.0, "b": 3.0}, "w2": {}}
    busy = {"w1": {"a": 0.9, "b": 0.01}, "w2": {}}
    assert watch.plan(rates, busy, now=0.0) is None  # once: a burst, perhaps
    calm = {"w1": {"a": 0.3, "b": 0.01}, "w2": {}}
    assert watch.plan(rates, calm, now=10.0) is None
    assert watch.plan(rates, busy, now=20.0) is None  # the streak starts again
    move = watch.plan(rates, busy, now=30.0)
    assert move == Move("a", "w1", "w2")
    watch.moved("a", 30.0)
    # Even if it still looked saturated beside neighbours, it stays for the cooldown.
    assert watch.plan(rates, busy, now=40.0) is None
    assert watch.plan(rates, busy, now=50.0) is None
    assert watch.plan(rates, busy, now=95.0) == Move("a", "w1", "w2")


def test_the_rate_rebalancer_puts_no_one_beside_a_saturating_tenant() -> None:
    watch = CostWatch()
    rates = {"w1": {"x": 40.0, "y": 30.0}, "w2": {"a": 1.0}, "w3": {"c": 20.0}}
    busy = {"w1": {}, "w2": {"a": 0.95}, "w3": {}}
    assert watch.plan(rates, busy, now=0.0) == Move("x", "w1", "w3")


def test_a_malformed_busy_report_is_ignored_value_by_value() -> None:
    from coordinator.hub import _busy

    assert _busy(None) is None and _busy([1, 2]) is None
    report = {"a": 1.5, "b": 2, "neg": -1.0, "flag": True, "nan": float("nan"),
              "inf": float("inf"), "text": "3"}  # fmt: skip
    assert _busy(report) == {"a": 1.5, "b": 2.0}
