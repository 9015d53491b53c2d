"""The event bus contract shared by the RabbitMQ bus and the local (embedded) bus.

Messages carry one stored event each, routed by its type on a topic exchange.
Publishing returns only once the bus has taken the message (publisher confirm
for RabbitMQ); a message no queue would receive is refused, never dropped.
Consumers get every message at least once, in publish order while nothing
fails; a handler that returns normally acks, one that raises ``PoisonMessage``
sends the message straight to the queue's dead-letter queue, any other error
requeues it until the delivery limit, after which it is dead-lettered too.
Either way the bus's ``on_dead_letter`` hook (if set) is told, with the reason,
and the consumer goes on with the next message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from eventlog.records import RECORD_FIELDS, StoredEvent

DEFAULT_EXCHANGE = "vectorpanda.events"
# Attempts before a failing message is dead-lettered instead of requeued.
DEFAULT_DELIVERY_LIMIT = 10
_FIELDS = frozenset(RECORD_FIELDS)


class PublishRefused(Exception):
    """The bus did not take the message (unroutable, nacked or connection lost)."""


class PoisonMessage(Exception):
    """A message that can never be handled: dead-letter it, do not retry."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a consumer sees it."""

    body: bytes
    routing_key: str
    # 1 on the first delivery; grows with every requeue.
    attempt: int


Handler = Callable[[Delivery], Awaitable[None]]
# Told of every message a consumer gives up on: (queue, body, reason, attempts).
DeadLetterHook = Callable[[str, bytes, str, int], Awaitable[None]]


async def tell_dead_letter(
    hook: DeadLetterHook | None, queue: str, body: bytes, reason: str, attempt: int
) -> None:
    """Give a dead letter to the bus's hook; recording it must never stop the consumer."""
    if hook is None:
        return
    try:
        await hook(queue, body, reason, attempt)
    except Exception:
        logging.getLogger("vectorpanda.bus").exception(
            "could not record a dead letter of %s", queue
        )


class Subscription(Protocol):
    async def cancel(self) -> None: ...


class Bus(Protocol):
    """What the relay and every consumer rely on, whatever carries the messages."""

    on_dead_letter: DeadLetterHook | None

    async def connect(self) -> None: ...

    async def declare_queue(
        self, name: str, bindings: Sequence[str], *, expires_s: float | None = None
    ) -> None: ...

    async def publish(self, stored: StoredEvent) -> None: ...

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 100
    ) -> Subscription: ...

    async def dead_letters(self, queue: str) -> list[bytes]: ...

    async def close(self) -> None: ...


def encode_message(stored: StoredEvent) -> bytes:
    """The wire form of a stored event: its full record as JSON, chain link included."""
    return orjson.dumps(stored.record())


def decode_message(body: bytes) -> StoredEvent:
    """Parse a message body; anything malformed is a PoisonMessage."""
    try:
        raw: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or set(raw) != _FIELDS:
        raise PoisonMessage("not a stored event record")
    try:
        stored = StoredEvent(**raw)
    except TypeError as exc:  # pragma: no cover - field set already checked
        raise PoisonMessage(str(exc)) from None
    if not isinstance(stored.seq, int) or stored.seq < 1 or not isinstance(stored.data, dict):
        raise PoisonMessage("seq or data has the wrong type")
    return stored


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))
