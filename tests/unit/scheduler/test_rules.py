"""Each auto-pause and anomaly rule, at and around its threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.jobs import CensusJob
from scheduler.rules import (
    ANOMALY_MIN_AGE_DAYS,
    Billing,
    ClientFacts,
    billing_anomalies,
    idle_free_clients,
    unpaid_clients,
)

NOW = datetime(2027, 6, 1, 12, tzinfo=UTC)


def facts(cid: str, tier: str = "free", status: str = "active", **kw: object) -> ClientFacts:
    created = kw.pop("created", NOW - timedelta(days=100))
    return ClientFacts(cid, tier, status, created, **kw)  # type: ignore[arg-type]


def days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def test_free_idle_rule_fires_only_past_the_threshold_and_only_for_free_active() -> None:
    clients = [
        facts("just_under", last_active=days(13.9)),
        facts("just_over", last_active=days(14.1)),
        facts("never_used_old", created=days(20)),
        facts("never_used_new", created=days(3)),
        facts("standard", tier="standard", last_active=days(300)),
        facts("already_paused", status="paused", last_active=days(300)),
        facts("resumed_recently", last_active=days(1), resumed_at=days(1)),
    ]
    got = {d.client_id for d in idle_free_clients(clients, NOW, 14)}
    assert got == {"just_over", "never_used_old"}
    assert {d.client_id for d in idle_free_clients(clients, NOW, 30)} == set()


def test_unpaid_rule_respects_grace_payment_and_resume() -> None:
    clients = [facts(c, tier="standard") for c in ("late", "in_grace", "paid", "none")]
    clients.append(facts("resumed", tier="standard", resumed_at=days(1)))
    billing = [
        Billing("late", "payment_failed", days(7.5)),
        Billing("in_grace", "payment_failed", days(6.5)),
        Billing("paid", "payment_failed", days(20)),
        Billing("paid", "payment_received", days(18)),
        Billing("resumed", "payment_failed", days(10)),
    ]
    assert [d.client_id for d in unpaid_clients(clients, billing, NOW, 7)] == ["late"]
    # A new failure after the payment starts the clock again.
    billing.append(Billing("paid", "payment_failed", days(8)))
    assert {d.client_id for d in unpaid_clients(clients, billing, NOW, 7)} == {"late", "paid"}


def test_anomaly_rule_fires_on_a_spike_not_on_growth_or_a_first_day() -> None:
    old = days(30)
    clients = [
        facts("spike", created=old),
        facts("growth", created=old),
        facts("newborn", created=NOW - timedelta(hours=20)),
        facts("young", created=days(ANOMALY_MIN_AGE_DAYS - 1)),
        facts("small", created=old),
    ]
    week = {"spike": 700.0, "growth": sum(1000 * 1.2**d for d in range(7)), "small": 7.0}
    last = {
        "spike": 50_000.0,
        "growth": 1000 * 1.2**7,  # 20 % a day, every day
        "newborn": 1_000_000.0,
        "young": 1_000_000.0,
        "small": 900.0,  # 900x its baseline of 1/day, but a trivial amount
    }
    found = billing_anomalies(clients, last, week, {}, NOW)
    assert [(a.client_id, a.observed, a.baseline) for a in found] == [("spike", 50_000.0, 100.0)]
    # Flagged an hour ago: quiet for a day.
    assert billing_anomalies(clients, last, week, {"spike": NOW - timedelta(hours=1)}, NOW) == []


def test_census_due_dates_catch_up_missed_days_once() -> None:
    job = CensusJob(admin=None, due_hour=0, due_minute=5)  # type: ignore[arg-type]
    at = datetime(2027, 3, 10, 0, 4, tzinfo=UTC)
    assert job.due_dates([], at) == ["2027-03-09"]
    assert job.due_dates(["2027-03-09"], at) == []
    later = datetime(2027, 3, 13, 9, 0, tzinfo=UTC)
    assert job.due_dates(["2027-03-09"], later) == [
        "2027-03-10",
        "2027-03-11",
        "2027-03-12",
        "2027-03-13",
    ]
