"""One contract for every event bus; subclass with ``make_bus`` and ``inject_raw`` fixtures.

Consumers rely on exactly this: topic routing, refusal of what no queue would
receive, in-order at-least-once delivery, requeue on failure up to a limit,
dead-lettering of poison, and redelivery of what a consumer never acked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
import pytest

from eventlog.bus import Bus, Delivery, PoisonMessage, PublishRefused, decode_message
from eventlog.consumer import CheckpointedConsumer
from eventlog.events import ApiKeyRevoked, ClientCreated
from eventlog.memory_store import InMemoryEventStore
from eventlog.records import StoredEvent

InjectRaw = Callable[[Bus, str, bytes], Awaitable[None]]


def log_of(n: int) -> tuple[InMemoryEventStore, list[StoredEvent]]:
    store = InMemoryEventStore()
    events = []
    for i in range(n):
        cid = f"c{i:016x}"
        events += store.append(
            [ClientCreated(client_id=cid, name=f"C{i}", email=f"c{i}@x.io", tier="free")], "admin"
        )
    return store, events


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Collector:
    def __init__(self, fail_first: int = 0) -> None:
        self.seen: list[int] = []
        self.attempts: list[int] = []
        self.fail_first = fail_first

    async def __call__(self, delivery: Delivery) -> None:
        stored = decode_message(delivery.body)
        self.attempts.append(delivery.attempt)
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("transient failure")
        self.seen.append(stored.seq)


class Counter:
    """A projection that counts applications per seq."""

    name = "counter"

    def __init__(self) -> None:
        self.cp = 0
        self.applied: list[int] = []

    def checkpoint(self) -> int:
        return self.cp

    def apply(self, events):
        for e in events:
            if e.seq > self.cp:
                assert e.seq == self.cp + 1
                self.applied.append(e.seq)
                self.cp = e.seq
        return self.cp


class BusContract:
    """Behaviour every bus must show; backends differ only in the fixtures."""

    async def test_events_arrive_in_order_by_topic(self, bus: Bus, qname) -> None:
        _, events = log_of(30)
        revoked = InMemoryEventStore().append(
            [ApiKeyRevoked(client_id="c1", key_id="0" * 16)], "admin"
        )
        await bus.declare_queue(qname("all"), ["#"])
        await bus.declare_queue(qname("keys"), ["api_key.*"])
        for e in events:
            await bus.publish(e)
        await bus.publish(revoked[0])
        everything, keys = Collector(), Collector()
        s1 = await bus.consume(qname("all"), everything)
        s2 = await bus.consume(qname("keys"), keys)
        await eventually(lambda: len(everything.seen) == 31 and len(keys.seen) == 1)
        assert everything.seen == [*range(1, 31), 1]
        await s1.cancel()
        await s2.cancel()

    async def test_unroutable_publish_is_refused(self, bus: Bus, qname) -> None:
        _, events = log_of(1)
        await bus.declare_queue(qname("keys-only"), ["api_key.#"])
        with pytest.raises(PublishRefused, match="unroutable"):
            await bus.publish(events[0])

    async def test_failed_handling_is_redelivered(self, bus: Bus, qname) -> None:
        _, events = log_of(3)
        await bus.declare_queue(qname("q"), ["#"])
        for e in events:
            await bus.publish(e)
        handler = Collector(fail_first=2)
        sub = await bus.consume(qname("q"), handler)
        await eventually(lambda: sorted(handler.seen) == [1, 2, 3])
        assert max(handler.attempts) >= 2
        await sub.cancel()
        assert await bus.dead_letters(qname("q")) == []

    async def test_poison_and_endless_failures_are_dead_lettered(
        self, bus: Bus, qname, inject_raw: InjectRaw
    ) -> None:
        _, events = log_of(3)
        await bus.declare_queue(qname("q"), ["#"])
        await bus.publish(events[0])
        await inject_raw(bus, "client.created", b"\xff not json")
        await bus.publish(events[1])
        await bus.publish(events[2])
        seen: list[int] = []

        async def handler(delivery: Delivery) -> None:
            stored = decode_message(delivery.body)  # raises PoisonMessage on garbage
            if stored.seq == 2:
                raise RuntimeError("this one always fails")
            seen.append(stored.seq)

        sub = await bus.consume(qname("q"), handler)
        await eventually(lambda: seen == [1, 3], timeout=20)

        async def dead() -> list[bytes]:
            return await bus.dead_letters(qname("q"))

        deadline = time.monotonic() + 20
        while len(letters := await dead()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert b"\xff not json" in letters
        assert any(decode_message(b).seq == 2 for b in letters if b.startswith(b"{"))
        await sub.cancel()

    async def test_unacked_messages_go_to_the_next_consumer(self, bus: Bus, qname) -> None:
        _, events = log_of(5)
        await bus.declare_queue(qname("q"), ["#"])
        for e in events:
            await bus.publish(e)
        started = asyncio.Event()

        async def stuck(delivery: Delivery) -> None:
            started.set()
            await asyncio.sleep(3600)

        sub = await bus.consume(qname("q"), stuck, prefetch=1)
        await asyncio.wait_for(started.wait(), 10)
        await sub.cancel()  # dies holding message 1, never acked
        handler = Collector()
        sub = await bus.consume(qname("q"), handler)
        await eventually(lambda: sorted(set(handler.seen)) == [1, 2, 3, 4, 5])
        await sub.cancel()

    async def test_checkpointed_consumer_applies_each_event_once_in_order(
        self, bus: Bus, qname, inject_raw: InjectRaw
    ) -> None:
        store, events = log_of(20)
        await bus.declare_queue(qname("proj"), ["#"])
        # Duplicates, a reordering and a lost message: the log fills every gap.
        order = [*events[:5], events[3], events[7], *events[5:7], *events[9:], events[12]]
        for e in order:
            await bus.publish(e)
        # A well-formed message the log does not back is poison.
        fake = {k: getattr(events[2], k) for k in events[2].__dataclass_fields__}
        fake["hash"] = "f" * 64
        await inject_raw(bus, "client.created", orjson.dumps({**fake, "seq": 21}))
        projection = Counter()
        consumer = CheckpointedConsumer(projection, store)
        sub = await bus.consume(qname("proj"), consumer.handle)
        await eventually(lambda: projection.cp == 20)
        await asyncio.sleep(0.3)
        assert projection.applied == list(range(1, 21))
        await sub.cancel()
        letters = await bus.dead_letters(qname("proj"))
        assert len(letters) == 1 and decode_message(letters[0]).seq == 21

    async def test_decode_rejects_what_is_not_an_event(self) -> None:
        for body in (b"[]", b"{}", b'{"seq": 1}', b"nope"):
            with pytest.raises(PoisonMessage):
                decode_message(body)
