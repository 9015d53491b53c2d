"""Every message a consumer gives up on reaches the dead-letter hook with its reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

from eventlog.bus import Delivery, PoisonMessage
from eventlog.dead_letters import DeadLetterBook
from eventlog.local_bus import LocalBus


async def _scenario() -> tuple[list[tuple[str, bytes, str, int]], list[bytes]]:
    bus = LocalBus(delivery_limit=3)
    told: list[tuple[str, bytes, str, int]] = []

    async def hook(queue: str, body: bytes, reason: str, attempts: int) -> None:
        told.append((queue, body, reason, attempts))

    bus.on_dead_letter = hook
    handled: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        if delivery.body == b"poison":
            raise PoisonMessage("cannot be parsed")
        if delivery.body == b"flaky":
            raise RuntimeError("database locked")
        handled.append(delivery.body)

    await bus.declare_queue("q", ["#"])
    subscription = await bus.consume("q", handler)
    for body in (b"poison", b"flaky", b"fine"):
        await bus.publish_raw("a.b", body)
    for _ in range(200):
        if handled:
            break
        await asyncio.sleep(0.01)
    await subscription.cancel()
    return told, handled


def test_poison_and_exhausted_messages_are_reported_and_the_consumer_goes_on() -> None:
    told, handled = asyncio.run(_scenario())
    assert handled == [b"fine"]
    assert [(q, b, n) for q, b, _, n in told] == [("q", b"poison", 1), ("q", b"flaky", 3)]
    assert told[0][2] == "poison: cannot be parsed"
    assert told[1][2].startswith("failed 3 times") and "database locked" in told[1][2]


def test_the_book_keeps_each_message_once_with_a_count(tmp_path: Path) -> None:
    book = DeadLetterBook(tmp_path / "dl.sqlite3")
    assert book.record("q", b"x", "poison: a", 1)[1] is True
    assert book.record("q", b"x", "poison: b", 1)[1] is False
    assert book.record("other", b"x", "poison: a", 1)[1] is True
    letters = book.all("q")
    assert [(d.reason, d.times, d.body) for d in letters] == [("poison: b", 2, b"x")]
    book.close()
