"""A realistic generated event log, appended through the store (not HTTP).

Used by the audit tests (a few thousand events) and ``benchmarks.audit_scale``
(a million). The mix follows a busy fleet: clients signing up with a key, then
mostly usage records and billing, some admin actions (tier changes, pauses,
keys, collections) and a daily census. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventlog.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    BillingAnomalyDetected,
    CensusSnapshotTaken,
    ClientCreated,
    ClientPaused,
    ClientResumed,
    CollectionCreated,
    CollectionDeleted,
    Event,
    InvoiceIssued,
    PaymentFailed,
    PaymentReceived,
    TierChanged,
    UsageRecorded,
)
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore

APPEND_BATCH = 2000
_TIERS = ("free", "standard", "premium")
_START = datetime(2026, 1, 1, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class FleetStory:
    """Generates events one at a time, keeping just enough state to stay plausible."""

    def __init__(self, clients: int, seed: int, prefix: str = "c") -> None:
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.clients = clients
        self.created = 0
        self.tier: dict[int, str] = {}
        self.paused: set[int] = set()
        self.keys: dict[int, int] = {}
        self.count = 0

    def _cid(self, i: int) -> str:
        return f"{self.prefix}{i:08x}"

    def next(self) -> tuple[Event, str]:
        """The next event and its actor."""
        self.count += 1
        rng = self.rng
        if self.created < self.clients and (self.created < 8 or rng.random() < 0.05):
            i = self.created
            self.created += 1
            self.tier[i] = rng.choice(_TIERS)
            self.keys[i] = 0
            return (
                ClientCreated(
                    client_id=self._cid(i),
                    name=f"Client {i}",
                    email=f"ops{i}@example.com",
                    tier=self.tier[i],  # type: ignore[arg-type]
                ),
                "admin",
            )
        i = rng.randrange(self.created)
        cid = self._cid(i)
        roll = rng.random()
        if self.count % 50_000 == 0:
            return (
                CensusSnapshotTaken(
                    archive=f"census/{self.count}.jsonl.gz",
                    sha256=f"{self.count:064x}",
                    clients=self.created,
                ),
                "scheduler",
            )
        if roll < 0.55:
            day = _START + timedelta(hours=self.count // 1000)
            return (
                UsageRecorded(
                    client_id=cid,
                    period_start=_iso(day),
                    period_end=_iso(day + timedelta(hours=1)),
                    requests=rng.randrange(10_000),
                    queries=rng.randrange(5_000),
                    vectors_upserted=rng.randrange(1_000),
                    vectors_stored=rng.randrange(100_000),
                    bytes_stored=rng.randrange(1 << 30),
                    rejected=rng.randrange(10),
                ),
                "meter",
            )
        if roll < 0.75:
            cents = rng.randrange(100, 100_000)
            ref = f"INV-{self.count}"
            kind = rng.random()
            if kind < 0.5:
                return InvoiceIssued(
                    client_id=cid, amount_cents=cents, currency="EUR", reference=ref
                ), "billing"
            if kind < 0.9:
                return PaymentReceived(
                    client_id=cid, amount_cents=cents, currency="EUR", reference=ref
                ), "billing"
            return PaymentFailed(
                client_id=cid, amount_cents=cents, currency="EUR", reference=ref, reason="nsf"
            ), "billing"
        if roll < 0.78:
            return BillingAnomalyDetected(
                client_id=cid, metric="queries", observed=900.5, baseline=9.25, window_hours=24
            ), "scheduler"
        if roll < 0.84:
            new = rng.choice([t for t in _TIERS if t != self.tier[i]])
            old, self.tier[i] = self.tier[i], new
            return TierChanged(
                client_id=cid,
                from_tier=old,  # type: ignore[arg-type]
                to_tier=new,  # type: ignore[arg-type]
                reason="upgrade" if rng.random() < 0.5 else None,
            ), "admin"
        if roll < 0.88:
            if i in self.paused:
                self.paused.discard(i)
                return ClientResumed(client_id=cid), "admin"
            self.paused.add(i)
            return ClientPaused(client_id=cid, reason="unpaid", automatic=True), "admin"
        if roll < 0.95:
            n = self.keys[i]
            self.keys[i] = n + 1
            key_id = f"{i:08x}{n:08x}"
            if n and rng.random() < 0.4:
                return ApiKeyRevoked(client_id=cid, key_id=f"{i:08x}{n - 1:08x}"), "admin"
            return ApiKeyIssued(
                client_id=cid, key_id=key_id, scopes=("read", "write"), label="ci"
            ), "admin"
        name = f"docs{rng.randrange(5)}"
        if rng.random() < 0.7:
            return CollectionCreated(
                client_id=cid, name=name, dimension=384, metric="cosine", index="hnsw"
            ), "client"
        return CollectionDeleted(client_id=cid, name=name), "client"


def build_log(
    store: SqliteEventStore,
    events: int,
    *,
    clients: int | None = None,
    seed: int = 20,
    prefix: str = "c",
) -> int:
    """Append ``events`` generated events in batches; return the head seq.

    ``prefix`` starts the client ids, so a second build on one log makes new clients.
    """
    story = FleetStory(clients if clients is not None else max(events // 100, 10), seed, prefix)
    head = store.head().seq
    done = 0
    while done < events:
        size = min(APPEND_BATCH, events - done)
        # One append per actor per batch, admin first so a client's creation precedes
        # its other events: appends stay large, which is what makes building fast.
        by_actor: dict[str, list[Event]] = {"admin": []}
        for _ in range(size):
            event, who = story.next()
            by_actor.setdefault(who, []).append(event)
        for actor, batch in by_actor.items():
            if batch:
                head = store.append(batch, actor)[-1].seq
        done += size
    return head


def build_log_at(path: Path, events: int, **kwargs: Any) -> SqliteEventStore:
    """A fresh control database at ``path`` holding ``events`` generated events."""
    store = SqliteEventStore(open_engine(path))
    build_log(store, events, **kwargs)
    return store
