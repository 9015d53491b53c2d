"""The local bus: the embedded default's in-process stand-in for RabbitMQ.

Same contract as the RabbitMQ bus (see ``eventlog.bus``): topic routing,
refusal of unroutable messages, at-least-once delivery in order, requeue up
to a delivery limit and dead-lettering. Queues live in this process only; a
restart loses what they held, which the checkpointed consumers make good by
catching up from the event log (the log, not the bus, is the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventlog.bus import (
    DEFAULT_DELIVERY_LIMIT,
    DeadLetterHook,
    Delivery,
    Handler,
    PoisonMessage,
    PublishRefused,
    encode_message,
    tell_dead_letter,
    topic_matches,
)
from eventlog.records import StoredEvent

log = logging.getLogger("vectorpanda.bus.local")


@dataclass
class _Queue:
    name: str
    bindings: tuple[str, ...]
    ready: deque[tuple[bytes, str, int]] = field(default_factory=deque)
    dead: list[bytes] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    consumer: asyncio.Task[None] | None = None


class _LocalSubscription:
    def __init__(self, queue: _Queue) -> None:
        self._queue = queue

    async def cancel(self) -> None:
        task = self._queue.consumer
        self._queue.consumer = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LocalBus:
    """Topic routing over in-memory queues, one consumer task per queue."""

    def __init__(
        self,
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._queues: dict[str, _Queue] = {}
        # routing key -> the queues bound for it: topic matching per publish cost more than
        # the rest of the relay; any change of queues or bindings clears it.
        self._routes: dict[str, list[_Queue]] = {}
        self._delivery_limit = delivery_limit
        self.on_dead_letter: DeadLetterHook | None = on_dead_letter

    async def connect(self) -> None:
        """Nothing to connect to."""

    async def declare_queue(
        self, name: str, bindings: Sequence[str], *, expires_s: float | None = None
    ) -> None:
        self._routes.clear()
        queue = self._queues.get(name)
        if queue is None:
            self._queues[name] = _Queue(name, tuple(bindings))
        else:
            queue.bindings = tuple(dict.fromkeys((*queue.bindings, *bindings)))

    async def publish(self, stored: StoredEvent) -> None:
        await self.publish_raw(stored.type, encode_message(stored))

    async def publish_raw(self, routing_key: str, body: bytes) -> None:
        """Route a message body as is (tests use it to inject poison)."""
        targets = self._routes.get(routing_key)
        if targets is None:
            targets = [
                q
                for q in self._queues.values()
                if any(topic_matches(b, routing_key) for b in q.bindings)
            ]
            self._routes[routing_key] = targets
        if not targets:
            raise PublishRefused(f"unroutable: no queue is bound for '{routing_key}'")
        for queue in targets:
            queue.ready.append((body, routing_key, 0))
            queue.wakeup.set()

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 100
    ) -> _LocalSubscription:
        q = self._queues[queue]
        if q.consumer is not None:
            raise RuntimeError(f"queue {queue} already has a consumer")
        q.consumer = asyncio.create_task(self._deliver(q, handler), name=f"local-bus:{queue}")
        return _LocalSubscription(q)

    async def _deliver(self, q: _Queue, handler: Handler) -> None:
        while True:
            if not q.ready:
                q.wakeup.clear()
                await q.wakeup.wait()
                continue
            body, key, attempts = q.ready.popleft()
            attempt = attempts + 1
            try:
                await handler(Delivery(body, key, attempt))
            except asyncio.CancelledError:
                q.ready.appendleft((body, key, attempts))  # never acked: deliver again
                raise
            except PoisonMessage as exc:
                log.error("dead-lettering a poison message on %s: %s", q.name, exc)
                q.dead.append(body)
                await self._dead_letter(q.name, body, f"poison: {exc}", attempt)
            except Exception as exc:
                if attempt >= self._delivery_limit:
                    log.exception(
                        "dead-lettering after %d failed deliveries on %s", attempt, q.name
                    )
                    q.dead.append(body)
                    reason = f"failed {attempt} times, last: {exc!r}"
                    await self._dead_letter(q.name, body, reason, attempt)
                else:
                    log.warning("handler failed on %s (attempt %d); requeued", q.name, attempt)
                    q.ready.appendleft((body, key, attempt))
                    await asyncio.sleep(min(0.05 * attempt, 1.0))

    async def _dead_letter(self, queue: str, body: bytes, reason: str, attempt: int) -> None:
        await tell_dead_letter(self.on_dead_letter, queue, body, reason, attempt)

    async def dead_letters(self, queue: str) -> list[bytes]:
        """Messages dead-lettered from ``queue``, oldest first."""
        return list(self._queues[queue].dead)

    async def delete_queue(self, name: str) -> None:
        self._routes.clear()
        q = self._queues.pop(name, None)
        if q is not None and q.consumer is not None:
            await _LocalSubscription(q).cancel()

    async def close(self) -> None:
        for q in list(self._queues.values()):
            await _LocalSubscription(q).cancel()
