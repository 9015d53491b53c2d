"""Rendezvous placement: stable, balanced, minimal movement."""

from __future__ import annotations

from collections import Counter

from coordinator.placement import Candidate, choose_owner

TENANTS = [f"c{i:016x}" for i in range(3000)]


def test_no_candidates_means_no_owner() -> None:
    assert choose_owner("c1", []) is None
    assert choose_owner("c1", [Candidate("w1", 0.0)]) is None


def test_choice_is_stable_and_order_independent() -> None:
    a = [Candidate("w1"), Candidate("w2"), Candidate("w3")]
    b = list(reversed(a))
    assert [choose_owner(t, a) for t in TENANTS] == [choose_owner(t, b) for t in TENANTS]


def test_spread_is_roughly_even() -> None:
    workers = [Candidate(f"w{i}") for i in range(3)]
    counts = Counter(choose_owner(t, workers) for t in TENANTS)
    assert set(counts) == {"w0", "w1", "w2"}
    assert min(counts.values()) > 0.8 * len(TENANTS) / 3


def test_removing_a_worker_moves_only_its_tenants() -> None:
    three = [Candidate("w0"), Candidate("w1"), Candidate("w2")]
    two = three[:2]
    for t in TENANTS:
        before = choose_owner(t, three)
        after = choose_owner(t, two)
        if before != "w2":
            assert after == before


def test_weights_skew_the_share() -> None:
    workers = [Candidate("heavy", 3.0), Candidate("light", 1.0)]
    counts = Counter(choose_owner(t, workers) for t in TENANTS)
    assert counts["heavy"] > 2 * counts["light"]


def test_rebalance_moves_the_hottest_tenant_that_helps() -> None:
    from coordinator.placement import Move, plan_rebalance

    rates = {"w1": {"hot": 60.0, "warm": 30.0, "cold": 1.0}, "w2": {"a": 5.0}}
    assert plan_rebalance(rates) == Move("hot", "w1", "w2")
    # a tenant as hot as the gap would only move the hot spot
    rates = {"w1": {"hot": 80.0, "x": 1.0}, "w2": {"a": 1.0}}
    assert plan_rebalance(rates) == Move("x", "w1", "w2")


def test_rebalance_leaves_balanced_quiet_or_single_tenant_workers_alone() -> None:
    from coordinator.placement import plan_rebalance

    assert plan_rebalance({"w1": {"a": 10.0, "b": 10.0}, "w2": {"c": 19.0}}) is None
    assert plan_rebalance({"w1": {"a": 3.0, "b": 1.0}, "w2": {}}) is None  # under the floor
    assert plan_rebalance({"w1": {"only": 500.0}, "w2": {}}) is None
    assert plan_rebalance({"w1": {"a": 100.0, "b": 1.0}}) is None


# Isolation by cost: busy threads (1.0 = one request of the tenant running all the time).


def test_a_tenant_saturating_a_shared_worker_moves_to_the_quietest_worker() -> None:
    from coordinator.placement import Move, plan_isolation, saturating

    rates = {"w1": {"a": 3.0, "b": 20.0}, "w2": {"c": 5.0}, "w3": {}}
    busy = {"w1": {"a": 0.95, "b": 0.02}, "w2": {"c": 0.1}, "w3": {}}
    hot = saturating(busy, 0.8)
    assert hot == {"a": "w1"}
    # Few requests (3/s) but every thread it may have: the rates alone would not see it.
    assert plan_isolation(rates, busy, {"a"}, hot) == Move("a", "w1", "w3")


def test_isolation_needs_saturation_twice_running_and_active_neighbours() -> None:
    from coordinator.placement import plan_isolation, saturating

    busy = {"w1": {"a": 0.95, "b": 0.02}, "w2": {}}
    hot = saturating(busy, 0.8)
    # saturated in this sample only (not persistent): nothing moves
    assert plan_isolation({"w1": {"a": 3.0, "b": 20.0}, "w2": {}}, busy, set(), hot) is None
    # its neighbour is idle (no requests, no busy time): it is isolated already
    idle = {"w1": {"a": 0.95, "b": 0.0}, "w2": {}}
    assert plan_isolation({"w1": {"a": 3.0}, "w2": {}}, idle, {"a"}, hot) is None
    # alone on its worker
    alone = {"w1": {"a": 3.0}, "w2": {"c": 1.0}}
    assert plan_isolation(alone, {"w1": {"a": 1.0}}, {"a"}, hot) is None


def test_isolation_never_moves_back_or_next_to_another_saturating_tenant() -> None:
    from coordinator.placement import Move, plan_isolation, saturating

    # After the move: a on w2 beside one active tenant; w1 has one active (b): 1 < 1 is false.
    rates = {"w1": {"b": 20.0}, "w2": {"a": 3.0, "c": 1.0}}
    busy = {"w1": {"b": 0.02}, "w2": {"a": 0.95, "c": 0.0}}
    hot = saturating(busy, 0.8)
    assert plan_isolation(rates, busy, {"a"}, hot) is None
    # Two saturating tenants, each on its own worker with neighbours: neither is moved onto
    # the other's worker (that would only swap whom they crowd).
    rates = {"w1": {"a": 3.0, "b": 9.0}, "w2": {"x": 3.0, "y": 9.0}}
    busy = {"w1": {"a": 0.9, "b": 0.1}, "w2": {"x": 0.9, "y": 0.1}}
    hot = saturating(busy, 0.8)
    assert plan_isolation(rates, busy, {"a", "x"}, hot) is None
    # ...but with a third, quiet worker, the busiest one goes there.
    rates["w3"] = {}
    busy["w2"]["x"] = 1.0
    assert plan_isolation(rates, busy, {"a", "x"}, hot) == Move("x", "w2", "w3")


def test_rate_rebalance_avoids_a_worker_hosting_a_saturating_tenant() -> None:
    from coordinator.placement import Move, plan_rebalance

    rates = {"w1": {"hot": 50.0, "x": 10.0}, "w2": {"a": 1.0}, "w3": {"c": 5.0}}
    assert plan_rebalance(rates) == Move("hot", "w1", "w2")
    assert plan_rebalance(rates, avoid={"w2"}) == Move("hot", "w1", "w3")
    assert plan_rebalance(rates, avoid={"w2", "w3"}) is None
