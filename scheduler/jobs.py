"""The scheduler's jobs: census, auto-pause, billing anomalies. Each takes ``now``.

Entry points only: they gather facts through the admin API, ask ``rules`` what
to do, and do it through the admin API.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from eventlog.events import BillingAnomalyDetected, ClientResumed
from scheduler.admin_client import AdminClient
from scheduler.rules import (
    ANOMALY_BASELINE_DAYS,
    Billing,
    ClientFacts,
    billing_anomalies,
    idle_free_clients,
    unpaid_clients,
)

log = logging.getLogger("vectorpanda.scheduler")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class CensusJob:
    """One census per UTC day; missed days are taken once each, oldest first."""

    def __init__(self, admin: AdminClient, due_hour: int = 0, due_minute: int = 5) -> None:
        self._admin = admin
        self._due = (due_hour, due_minute)
        # Dates known to be taken; asked of the API once per process (POST is idempotent).
        self._done: list[str] | None = None

    def due_dates(self, done: list[str], now: datetime) -> list[str]:
        """Dates whose census is due by ``now`` and not yet taken (after the last one taken)."""
        today = now.date()
        last_due = today if (now.hour, now.minute) >= self._due else today - timedelta(days=1)
        if not done:
            return [last_due.isoformat()]
        start = max(date.fromisoformat(d) for d in done if d) + timedelta(days=1)
        out = []
        while start <= last_due:
            out.append(start.isoformat())
            start += timedelta(days=1)
        return out

    async def run(self, now: datetime) -> list[str]:
        """Take every census due; returns the dates taken now."""
        if self._done is None:
            self._done = await self._admin.census_dates()
        taken = []
        for day in self.due_dates(self._done, now):
            result = await self._admin.take_census(day)
            self._done.append(day)
            if result.get("taken"):
                taken.append(day)
                log.info("census %s: %s (sha256 %s)", day, result["archive"], result["sha256"])
        return taken


async def client_facts(admin: AdminClient, now: datetime, idle_days: int) -> list[ClientFacts]:
    """Tier, status, age, last activity and last resume of every client."""
    usage = await admin.usage(now - timedelta(days=idle_days))
    resumed: dict[str, datetime] = {}
    for event in await admin.events(ClientResumed.event_type):
        resumed[event["client_id"]] = parse_time(event["occurred_at"])
    facts = []
    for c in await admin.clients():
        row = usage.get(c["client_id"])
        active = parse_time(row["last_period_end"]) if row and row["requests"] > 0 else None
        back = resumed.get(c["client_id"])
        if back is not None and (active is None or back > active):
            active = back
        facts.append(
            ClientFacts(
                client_id=c["client_id"],
                tier=c["tier"],
                status=c["status"],
                created_at=parse_time(c["created_at"]),
                last_active=active,
                resumed_at=back,
            )
        )
    return facts


class AutoPauseJob:
    """Pauses the clients the rules name (free idle; unpaid past the grace)."""

    def __init__(self, admin: AdminClient, idle_days: int, grace_days: int) -> None:
        self._admin = admin
        self.idle_days = idle_days
        self.grace_days = grace_days

    async def run(self, now: datetime) -> list[str]:
        facts = await client_facts(self._admin, now, self.idle_days)
        return await self.decide_and_pause(facts, now)

    async def decide_and_pause(self, facts: list[ClientFacts], now: datetime) -> list[str]:
        billing = [
            Billing(e["client_id"], kind, parse_time(e["occurred_at"]))
            for kind in ("payment_failed", "payment_received")
            for e in await self._admin.events(f"billing.{kind}")
        ]
        decisions = idle_free_clients(facts, now, self.idle_days)
        named = {d.client_id for d in decisions}
        decisions += [
            d
            for d in unpaid_clients(facts, billing, now, self.grace_days)
            if d.client_id not in named
        ]
        for decision in decisions:
            await self._admin.pause(decision.client_id, decision.reason)
            log.info("auto-paused %s: %s", decision.client_id, decision.reason)
        return [d.client_id for d in decisions]


class AnomalyJob:
    """Flags clients whose last day of requests is far above their own trailing baseline."""

    def __init__(self, admin: AdminClient) -> None:
        self._admin = admin

    async def run(self, now: datetime, facts: list[ClientFacts] | None = None) -> list[str]:
        facts = facts if facts is not None else await client_facts(self._admin, now, 1)
        day = await self._admin.usage(now - timedelta(days=1))
        week = await self._admin.usage(now - timedelta(days=1 + ANOMALY_BASELINE_DAYS))
        last_day = {cid: float(r["requests"]) for cid, r in day.items()}
        baseline = {cid: float(r["requests"]) - last_day.get(cid, 0.0) for cid, r in week.items()}
        flagged: dict[str, datetime] = {}
        for e in await self._admin.events(BillingAnomalyDetected.event_type):
            flagged[e["client_id"]] = parse_time(e["occurred_at"])
        found = billing_anomalies(facts, last_day, baseline, flagged, now)
        for a in found:
            figures: dict[str, Any] = {
                "metric": a.metric,
                "observed": a.observed,
                "baseline": a.baseline,
                "window_hours": a.window_hours,
            }
            await self._admin.flag_anomaly(a.client_id, figures)
            log.info("billing anomaly for %s: %s", a.client_id, figures)
        return [a.client_id for a in found]


class BackupJob:
    """A backup of every client with changes since its last one (paused clients too).

    A change is any data-plane request metered since the last backup began, or no
    backup at all yet. Retention per tier is applied by the coordinator after each
    backup; failures are events (and an email to operations) recorded there.
    """

    def __init__(self, admin: AdminClient) -> None:
        self._admin = admin

    async def run(self, now: datetime) -> list[str]:
        started = []
        for c in await self._admin.clients():
            cid = c["client_id"]
            done = [b for b in await self._admin.backups(cid) if b["status"] == "complete"]
            if done:
                since = parse_time(str(done[-1]["started_at"]))
                row = (await self._admin.usage(since)).get(cid)
                if not row or row["requests"] <= 0:
                    continue
            await self._admin.start_backup(cid)
            started.append(cid)
        if started:
            log.info("daily backups started for %d clients", len(started))
        return started


class RestoreDrillJob:
    """The weekly restore drill, through the admin API (its result is an event)."""

    def __init__(self, admin: AdminClient) -> None:
        self._admin = admin

    async def run(self, now: datetime) -> dict[str, Any]:
        report = await self._admin.restore_drill()
        level = logging.INFO if report["ok"] else logging.ERROR
        log.log(level, "restore drill: %s", report)
        return report
