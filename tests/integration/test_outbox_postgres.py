"""The outbox on PostgreSQL: the relay publishes every event once, in seq order, and a
checkpointed consumer trusts a delivery only when it matches the log on the server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from eventlog.consumer import CheckpointedConsumer
from eventlog.database import open_control_engine
from eventlog.local_bus import LocalBus
from eventlog.records import StoredEvent
from eventlog.relay import OutboxRelay
from eventlog.relay_leader import LeaderOutbox, RelayLeadership
from eventlog.store import SqliteEventStore
from tests.unit.eventlog.bus_contract import Collector, eventually
from tests.unit.eventlog.event_store_contract import created

pytestmark = pytest.mark.integration


class Folded:
    """A projection that keeps what it applied (checkpoint = last seq)."""

    name = "folded"

    def __init__(self) -> None:
        self.applied: list[int] = []

    def checkpoint(self) -> int:
        return self.applied[-1] if self.applied else 0

    def apply(self, events: Sequence[StoredEvent]) -> int:
        self.applied += [e.seq for e in events if e.seq > self.checkpoint()]
        return self.checkpoint()


async def test_relay_publishes_each_event_once_in_order_and_consumers_match_the_log(
    pg_url: str, tmp_path: Path
) -> None:
    store = SqliteEventStore(open_control_engine(pg_url, tmp_path / "unused.sqlite3"))
    for n in range(0, 120, 3):
        store.append([created(n), created(n + 1), created(n + 2)], actor="admin")
    bus = LocalBus()
    await bus.declare_queue("all", ["#"])
    await bus.declare_queue("projection", ["#"])
    seen = Collector()
    folded = Folded()
    consumer = CheckpointedConsumer(folded, store)
    subs = [await bus.consume("all", seen), await bus.consume("projection", consumer.handle)]
    relay = OutboxRelay(store, bus, batch=50, window=20, poll_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await eventually(lambda: len(seen.seen) >= 120 and folded.checkpoint() == 120)
    store.append([created(500)], actor="admin")
    relay.wake()
    await eventually(lambda: folded.checkpoint() == 121)
    stop.set()
    await task
    for sub in subs:
        await sub.cancel()
    await bus.close()
    assert seen.seen == list(range(1, 122))
    assert folded.applied == list(range(1, 122))
    assert store.pending_outbox() == []
    assert store.verify_chain().ok
    store.engine.dispose()


class Recorder:
    """A bus that takes everything and remembers the seqs, per coordinator."""

    def __init__(self) -> None:
        self.taken: list[int] = []

    async def publish(self, stored: StoredEvent) -> None:
        self.taken.append(stored.seq)


async def test_one_relay_leads_and_another_takes_over_when_it_dies(
    pg_url: str, tmp_path: Path
) -> None:
    stores = [
        SqliteEventStore(open_control_engine(pg_url, tmp_path / "unused.sqlite3")) for _ in range(3)
    ]  # three coordinators, each with its own engine
    leaderships = [RelayLeadership(s.engine) for s in stores]
    buses = [Recorder() for _ in stores]
    relays = [
        OutboxRelay(LeaderOutbox(s, lead), bus, poll_s=0.05)
        for s, lead, bus in zip(stores, leaderships, buses, strict=True)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in relays]
    for n in range(60):
        stores[n % 3].append([created(n)], actor=f"coordinator-{n % 3}")
    await eventually(lambda: sum(len(b.taken) for b in buses) >= 60)
    leader = next(i for i, b in enumerate(buses) if b.taken)
    assert buses[leader].taken == list(range(1, 61))  # in order, by the leader alone
    assert all(not b.taken for i, b in enumerate(buses) if i != leader)

    leaderships[leader].release()  # as its connection closing when the process dies
    tasks[leader].cancel()
    for n in range(60, 90):
        stores[n % 3].append([created(n)], actor="admin")
    await eventually(lambda: sum(len(b.taken) for b in buses) >= 90)
    stop.set()
    await asyncio.gather(*(t for i, t in enumerate(tasks) if i != leader))
    heirs = [b.taken for i, b in enumerate(buses) if i != leader and b.taken]
    assert heirs == [list(range(61, 91))]  # one heir, carrying on in order
    assert stores[0].pending_outbox() == []
    for lead, store in zip(leaderships, stores, strict=True):
        lead.release()
        store.engine.dispose()
