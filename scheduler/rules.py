"""The scheduler's decisions, as pure functions: who to pause, what is a billing anomaly.

Each rule and its threshold lives here and nowhere else.

- Free-tier idle: a free, active client with no data-plane request for more
  than ``free_idle_days`` (VP_FREE_IDLE_DAYS, default 14). Activity is any
  recorded usage period with requests, its creation, or its last resume.
- Unpaid: an active client whose latest ``PaymentFailed`` has no
  ``PaymentReceived`` after it within ``payment_grace_days``
  (VP_PAYMENT_GRACE_DAYS, default 7), unless it was resumed after that failure.
- Billing anomaly: a client's requests in the last 24 hours exceed both
  ``ANOMALY_FACTOR`` (5) times its own trailing baseline (the daily average of
  the 7 days before) and that baseline plus ``ANOMALY_MIN_EXCESS`` (1000). Not
  for a client younger than ``ANOMALY_MIN_AGE_DAYS`` (8: a full baseline week
  plus the observed day), so never on a new client's first day; steady growth
  (even 20 % a day) stays under 5x the trailing week, so it never fires; and at
  most once per client per ``ANOMALY_QUIET_HOURS`` (24).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from eventlog.events import ClientStatus, Tier

ANOMALY_FACTOR = 5.0
ANOMALY_MIN_EXCESS = 1000.0
ANOMALY_BASELINE_DAYS = 7
ANOMALY_MIN_AGE_DAYS = 8
ANOMALY_QUIET_HOURS = 24


@dataclass(frozen=True, slots=True)
class ClientFacts:
    client_id: str
    tier: str
    status: str
    created_at: datetime
    last_active: datetime | None = None  # latest usage with requests, or resume
    resumed_at: datetime | None = None  # latest ClientResumed


@dataclass(frozen=True, slots=True)
class Billing:
    client_id: str
    kind: str  # "payment_failed" | "payment_received"
    at: datetime


@dataclass(frozen=True, slots=True)
class PauseDecision:
    client_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Anomaly:
    client_id: str
    metric: str
    observed: float
    baseline: float
    window_hours: int


def idle_free_clients(
    clients: Iterable[ClientFacts], now: datetime, idle_days: int
) -> list[PauseDecision]:
    """Free, active clients idle for more than ``idle_days``."""
    limit = timedelta(days=idle_days)
    out = []
    for c in clients:
        if c.tier != Tier.FREE or c.status != ClientStatus.ACTIVE:
            continue
        last = max(c.created_at, c.last_active) if c.last_active else c.created_at
        if now - last > limit:
            out.append(PauseDecision(c.client_id, f"free tier idle for more than {idle_days} days"))
    return out


def unpaid_clients(
    clients: Iterable[ClientFacts], billing: Iterable[Billing], now: datetime, grace_days: int
) -> list[PauseDecision]:
    """Active clients with a failed payment not followed by a payment within the grace."""
    grace = timedelta(days=grace_days)
    failed: dict[str, datetime] = {}
    paid: dict[str, datetime] = {}
    for b in billing:
        book = (
            failed if b.kind == "payment_failed" else paid if b.kind == "payment_received" else None
        )
        if book is not None and (b.client_id not in book or b.at > book[b.client_id]):
            book[b.client_id] = b.at
    out = []
    for c in clients:
        if c.status != ClientStatus.ACTIVE or c.client_id not in failed:
            continue
        failed_at = failed[c.client_id]
        if c.client_id in paid and paid[c.client_id] >= failed_at:
            continue
        if c.resumed_at is not None and c.resumed_at > failed_at:
            continue  # an operator resumed it after the failure: their call stands
        if now - failed_at > grace:
            out.append(
                PauseDecision(c.client_id, f"payment failed and unpaid after {grace_days} days")
            )
    return out


def billing_anomalies(
    clients: Iterable[ClientFacts],
    last_day: Mapping[str, float],
    baseline_window: Mapping[str, float],
    last_flagged: Mapping[str, datetime],
    now: datetime,
) -> list[Anomaly]:
    """Clients whose last-24 h requests are far above their own trailing daily average.

    ``last_day``: requests in the last 24 h; ``baseline_window``: requests in the
    ``ANOMALY_BASELINE_DAYS`` days before that.
    """
    out = []
    for c in clients:
        too_young = now - c.created_at < timedelta(days=ANOMALY_MIN_AGE_DAYS)
        if c.status != ClientStatus.ACTIVE or too_young:
            continue
        flagged = last_flagged.get(c.client_id)
        if flagged is not None and now - flagged < timedelta(hours=ANOMALY_QUIET_HOURS):
            continue
        observed = float(last_day.get(c.client_id, 0.0))
        baseline = float(baseline_window.get(c.client_id, 0.0)) / ANOMALY_BASELINE_DAYS
        if observed > ANOMALY_FACTOR * baseline and observed > baseline + ANOMALY_MIN_EXCESS:
            out.append(Anomaly(c.client_id, "requests", observed, round(baseline, 3), 24))
    return out
