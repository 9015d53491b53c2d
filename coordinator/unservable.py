"""Tenants that cannot be served right now: since when, why, when to retry, and the alert.

A tenant is unservable from the first failed hand-over (a worker refused or did
not answer ASSIGN) until one succeeds. The router retries the hand-over with
exponential backoff in the background, so a tenant never stays in 503 just
because nobody asked again; past ``alert_after_s`` operations are told once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Outage:
    """One tenant's current spell of unavailability."""

    since: float
    reason: str
    next_try: float
    delay: float
    alerted: bool = False


class UnservableTenants:
    """Outages by tenant; every method takes ``now`` (monotonic seconds) for testing."""

    def __init__(
        self, alert_after_s: float = 30.0, first_retry_s: float = 0.25, max_retry_s: float = 4.0
    ) -> None:
        self.alert_after_s = alert_after_s
        self._first, self._max = first_retry_s, max_retry_s
        self._outages: dict[str, Outage] = {}
        self.alerts = 0

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._outages

    def __len__(self) -> int:
        return len(self._outages)

    def failed(self, tenant: str, reason: str, now: float | None = None) -> None:
        """A hand-over failed: start (or extend) the outage and push the next retry back."""
        now = time.monotonic() if now is None else now
        outage = self._outages.get(tenant)
        if outage is None:
            self._outages[tenant] = Outage(now, reason, now + self._first, self._first)
            return
        outage.reason = reason
        outage.delay = min(outage.delay * 2, self._max)
        outage.next_try = now + outage.delay

    def served(self, tenant: str, now: float | None = None) -> float | None:
        """The tenant has an owner again; return how long it was out (None if it was not)."""
        outage = self._outages.pop(tenant, None)
        if outage is None:
            return None
        return (time.monotonic() if now is None else now) - outage.since

    def forget(self, tenant: str) -> None:
        """Stop retrying (the tenant is being paused or deleted on purpose)."""
        self._outages.pop(tenant, None)

    def due(self, now: float | None = None) -> list[str]:
        """Tenants whose next hand-over attempt is due."""
        now = time.monotonic() if now is None else now
        return [t for t, o in self._outages.items() if o.next_try <= now]

    def over_bound(self, now: float | None = None) -> int:
        """How many tenants have been unservable for longer than the alert bound."""
        now = time.monotonic() if now is None else now
        return sum(1 for o in self._outages.values() if now - o.since > self.alert_after_s)

    def to_alert(self, now: float | None = None) -> list[tuple[str, Outage]]:
        """Outages past the bound not yet alerted; each is returned once."""
        now = time.monotonic() if now is None else now
        fresh = [
            (t, o)
            for t, o in self._outages.items()
            if not o.alerted and now - o.since > self.alert_after_s
        ]
        for _, outage in fresh:
            outage.alerted = True
        self.alerts += len(fresh)
        return fresh
