"""Usage metering: what each client did, counted in the coordinator, recorded hourly.

Counts per client: data-plane requests, requests rejected (any 4xx/5xx, 423
while paused included), queries (query vectors), vectors written; at flush
time the stored vector count and bytes on disk are asked of the owning worker
(or the last known figures are kept for a tenant nobody has loaded). A flush
takes the counters, records one ``UsageRecorded`` per active client and puts
the counts back if recording failed, so no counted usage is lost; the
coordinator flushes hourly and once more on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.accounts import Accounts, RecordUsage
from eventlog.events import UsageRecorded
from eventlog.records import MAX_READ_LIMIT
from eventlog.stopping import wait_or_stop

log = logging.getLogger("vectorpanda.usage")

Clock = Callable[[], datetime]
StoredFigures = Callable[[str], Awaitable[dict[str, int] | None]]
FLUSH_INTERVAL_S = 3600.0


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Counts:
    requests: int = 0
    rejected: int = 0
    queries: int = 0
    vectors_upserted: int = 0

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.rejected += other.rejected
        self.queries += other.queries
        self.vectors_upserted += other.vectors_upserted


def next_flush_delay(now: datetime, interval_s: float) -> float:
    """Seconds until the next flush: the next multiple of ``interval_s`` since the epoch, or
    UTC midnight if that comes first.

    A recorded period therefore never spans midnight, so the census covering a day
    (dated the day after; it sums the periods that began on the day it covers) counts
    all of that day's usage exactly once, whichever interval is set and whenever the
    coordinator started.
    """
    ts = now.timestamp()
    aligned = (math.floor(ts / interval_s) + 1) * interval_s
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    midnight = (day + timedelta(days=1)).timestamp()
    return max(0.0, min(aligned, midnight) - ts)


class UsageMeter:
    """In-memory counters per client, flushed as UsageRecorded events."""

    def __init__(
        self, accounts: Accounts, stored: StoredFigures | None = None, clock: Clock = utc_clock
    ) -> None:
        self._accounts = accounts
        self._stored = stored
        self._clock = clock
        self._counts: dict[str, Counts] = {}
        self._last_stored: dict[str, dict[str, int]] = {}
        self.period_start = clock()
        self._flush_lock = asyncio.Lock()

    def _of(self, client_id: str) -> Counts:
        counts = self._counts.get(client_id)
        if counts is None:
            counts = self._counts[client_id] = Counts()
        return counts

    def observe_request(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        """Request observer (the API middleware calls it for every request)."""
        state = scope.get("state") or {}
        client_id = state.get("client_id") if isinstance(state, dict) else None
        if not client_id or not str(scope.get("path", "")).startswith("/v1/"):
            return
        counts = self._of(client_id)
        counts.requests += 1
        if status >= 400:
            counts.rejected += 1

    def record_queries(self, client_id: str, n: int) -> None:
        self._of(client_id).queries += n

    def record_upserted(self, client_id: str, n: int) -> None:
        self._of(client_id).vectors_upserted += n

    def pending(self, client_id: str) -> Counts:
        """Counts not yet flushed (for tests and the dashboard)."""
        return self._counts.get(client_id, Counts())

    async def flush(self, ask_workers: bool = True) -> int:
        """Record one UsageRecorded per client counted since the last flush; returns how many.

        ``ask_workers=False`` (shutdown) keeps the last known stored figures instead of
        asking workers that may already be gone.
        """
        async with self._flush_lock:
            taken, self._counts = self._counts, {}
            start, end = self.period_start, self._clock()
            self.period_start = end
            recorded = 0
            for client_id, counts in taken.items():
                stored = (
                    await self._stored_figures(client_id)
                    if ask_workers
                    else self._last_stored.get(client_id, {})
                )
                try:
                    await self._accounts.handle(
                        RecordUsage(
                            client_id=client_id,
                            period_start=iso(start),
                            period_end=iso(end),
                            requests=counts.requests,
                            queries=counts.queries,
                            vectors_upserted=counts.vectors_upserted,
                            vectors_stored=stored.get("vectors", 0),
                            bytes_stored=stored.get("bytes", 0),
                            rejected=counts.rejected,
                        )
                    )
                    recorded += 1
                except Exception:
                    log.exception(
                        "recording usage of %s failed; kept for the next flush", client_id
                    )
                    self._of(client_id).add(counts)
            return recorded

    async def _stored_figures(self, client_id: str) -> dict[str, int]:
        if self._stored is not None:
            try:
                figures = await self._stored(client_id)
            except Exception:
                figures = None
            if figures is not None:
                self._last_stored[client_id] = figures
        return self._last_stored.get(client_id, {})

    async def run(self, stop: asyncio.Event, interval_s: float = FLUSH_INTERVAL_S) -> None:
        """Flush on UTC boundaries of ``interval_s`` (and at midnight); once more at ``stop``."""
        try:
            while not stop.is_set():
                await wait_or_stop(stop, next_flush_delay(self._clock(), interval_s))
                await self.flush()
        finally:
            await self.flush(ask_workers=False)


class RequestObservers:
    """Fans one request outcome out to several observers (metrics, usage)."""

    def __init__(self, *observers: Any) -> None:
        self._observers = observers

    def observe_request(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        for observer in self._observers:
            observer.observe_request(scope, status, seconds)


# Usage is recorded at flush time, after its period ended; the slack covers clock skew.
RECORDING_SLACK = timedelta(hours=1)


def seq_before(tx: Any, moment: str) -> int:
    """The last seq recorded at or before ``moment`` (binary search: seq order is time order)."""
    lo, hi = 0, int(tx.events.head().seq)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        (event,) = tx.events.read(mid - 1, 1)
        if event.occurred_at <= moment:
            lo = mid
        else:
            hi = mid - 1
    return lo


def usage_since(accounts: Accounts, since: datetime) -> Awaitable[list[dict[str, Any]]]:
    """Usage periods recorded with ``period_end`` after ``since``, summed per client."""

    def body(tx: Any) -> list[dict[str, Any]]:
        cutoff = iso(since)
        totals: dict[str, dict[str, Any]] = {}
        # A period ending after ``since`` was recorded after it: skip the older log.
        after = seq_before(tx, iso(since - RECORDING_SLACK))
        while True:
            page = tx.events.read(after, MAX_READ_LIMIT, None, UsageRecorded.event_type)
            for stored in page:
                # Read the stored data as is (cheap); v1 rows simply lack ``rejected``.
                data, cid = stored.data, str(stored.client_id)
                if str(data.get("period_end", "")) <= cutoff:
                    continue
                row = totals.setdefault(
                    cid,
                    {
                        "client_id": cid,
                        "requests": 0,
                        "rejected": 0,
                        "queries": 0,
                        "vectors_upserted": 0,
                        "vectors_stored": 0,
                        "bytes_stored": 0,
                        "periods": 0,
                        "first_period_start": data["period_start"],
                        "last_period_end": data["period_end"],
                    },
                )
                for name in ("requests", "rejected", "queries", "vectors_upserted"):
                    row[name] += int(data.get(name, 0))
                row["vectors_stored"] = int(data.get("vectors_stored", 0))
                row["bytes_stored"] = int(data.get("bytes_stored", 0))
                row["periods"] += 1
                row["last_period_end"] = max(row["last_period_end"], data["period_end"])
            if len(page) < MAX_READ_LIMIT:
                break
            after = page[-1].seq
        return sorted(totals.values(), key=lambda r: str(r["client_id"]))

    return accounts.uow.read(body)


def default_since(clock: Clock = utc_clock) -> datetime:
    return clock() - timedelta(days=1)
