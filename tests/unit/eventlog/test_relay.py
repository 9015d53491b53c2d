"""The outbox relay: order, confirm-then-mark, and nothing dropped when the bus refuses."""

from __future__ import annotations

import asyncio

from eventlog.bus import PublishRefused
from eventlog.local_bus import LocalBus
from eventlog.records import StoredEvent
from eventlog.relay import OutboxRelay
from tests.unit.eventlog.bus_contract import Collector, eventually, log_of


class FlakyBus:
    """Refuses every publish while ``down``; records what it took."""

    def __init__(self) -> None:
        self.down = False
        self.taken: list[int] = []

    async def publish(self, stored: StoredEvent) -> None:
        if self.down:
            raise PublishRefused("broker down")
        self.taken.append(stored.seq)


async def test_publishes_in_seq_order_and_empties_the_outbox() -> None:
    store, _ = log_of(250)
    bus = LocalBus()
    await bus.declare_queue("all", ["#"])
    relay = OutboxRelay(store, bus, batch=100, window=30)
    got = Collector()
    sub = await bus.consume("all", got)
    while (await relay.publish_pending())[1]:
        pass
    await eventually(lambda: len(got.seen) == 250)
    assert got.seen == list(range(1, 251))
    assert store.pending_outbox() == []
    await sub.cancel()


async def test_refused_events_stay_pending_and_go_out_later(caplog) -> None:
    store, _ = log_of(5)
    bus = FlakyBus()
    bus.down = True
    relay = OutboxRelay(store, bus, poll_s=0.05, max_backoff_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.3)
    assert [e.seq for e in store.pending_outbox()] == [1, 2, 3, 4, 5]
    assert "OUTBOX NOT DRAINING" in caplog.text
    bus.down = False
    await eventually(lambda: store.pending_outbox() == [])
    stop.set()
    await task
    assert sorted(set(bus.taken)) == [1, 2, 3, 4, 5]


async def test_unroutable_event_is_kept_and_logged_loudly(caplog) -> None:
    store, _ = log_of(2)
    bus = LocalBus()
    await bus.declare_queue("keys", ["api_key.*"])  # nobody takes client.created
    relay = OutboxRelay(store, bus)
    try:
        await relay.publish_pending()
    except PublishRefused as exc:
        assert "unroutable" in str(exc)
    else:
        raise AssertionError("an unroutable publish must not pass")
    assert [e.seq for e in store.pending_outbox()] == [1, 2]


async def test_wake_publishes_a_new_commit_promptly() -> None:
    store, _ = log_of(0)
    bus = LocalBus()
    await bus.declare_queue("all", ["#"])
    got = Collector()
    sub = await bus.consume("all", got)
    relay = OutboxRelay(store, bus, poll_s=30)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.05)
    from tests.unit.eventlog.bus_contract import ClientCreated

    store.append([ClientCreated(client_id="c1", name="A", email="a@b.io", tier="free")], "admin")
    relay.wake()
    await eventually(lambda: got.seen == [1], timeout=1.0)
    stop.set()
    await task
    await sub.cancel()
