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
from eventlog.relay import OutboxRelay
from eventlog.store import SqliteEventStore, StoredEvent
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
