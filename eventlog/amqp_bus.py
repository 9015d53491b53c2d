"""The RabbitMQ bus (aio-pika, robust connection), contract in ``eventlog.bus``.

- Events go to the durable topic exchange (default ``vectorpanda.events``),
  routing key = event type, persistent, ``mandatory``, with publisher
  confirms: ``publish`` returns only after the broker's ack and raises
  ``PublishRefused`` for a return (unroutable), a nack, a timeout or a lost
  connection.
- Consumer queues are durable quorum queues with ``x-delivery-limit`` and a
  dead-letter exchange (``<exchange>.dlx``, direct) that routes to
  ``<queue>.dlq``. A message that keeps failing or is rejected as poison
  lands there and stays, visible to operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from eventlog.bus import (
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_EXCHANGE,
    DeadLetterHook,
    Delivery,
    Handler,
    PoisonMessage,
    PublishRefused,
    encode_message,
    tell_dead_letter,
)
from eventlog.records import StoredEvent

log = logging.getLogger("vectorpanda.bus.amqp")

PUBLISH_TIMEOUT_S = 10.0


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


class _AmqpSubscription:
    def __init__(
        self, channel: AbstractChannel, queue: AbstractQueue, tag: str, worker: asyncio.Task[None]
    ) -> None:
        self._channel, self._queue, self._tag, self._worker = channel, queue, tag, worker

    async def cancel(self) -> None:
        with contextlib.suppress(Exception):
            await self._queue.cancel(self._tag)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        # Closing the channel hands every unacked message back to the broker.
        with contextlib.suppress(Exception):
            await self._channel.close()


class RabbitBus:
    """One robust connection: a confirming publish channel and a channel per consumer."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = DEFAULT_EXCHANGE,
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
        reconnect_interval_s: float = 1.0,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._url = url
        self.exchange_name = exchange
        self.dlx_name = f"{exchange}.dlx"
        self._delivery_limit = delivery_limit
        self._publish_timeout_s = publish_timeout_s
        self._reconnect_interval_s = reconnect_interval_s
        self._conn: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._admin: AbstractChannel | None = None
        self.on_dead_letter: DeadLetterHook | None = on_dead_letter

    async def connect(self) -> None:
        """Connect (retrying until the broker answers) and declare the exchanges."""
        self._conn = await aio_pika.connect_robust(
            self._url, reconnect_interval=self._reconnect_interval_s
        )
        self._publish_channel = await self._conn.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._publish_channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._admin = await self._conn.channel()
        await self._admin.declare_exchange(
            self.dlx_name, aio_pika.ExchangeType.DIRECT, durable=True
        )

    def _require(self) -> tuple[AbstractRobustConnection, AbstractChannel]:
        if self._conn is None or self._admin is None:
            raise RuntimeError("RabbitBus.connect() was not called")
        return self._conn, self._admin

    async def declare_queue(
        self, name: str, bindings: Sequence[str], *, expires_s: float | None = None
    ) -> None:
        """A durable quorum queue bound to ``bindings``, with its dead-letter queue."""
        _, admin = self._require()
        dlq = await admin.declare_queue(
            dead_letter_queue(name), durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dlq.bind(self.dlx_name, routing_key=name)
        arguments: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self._delivery_limit,
            "x-dead-letter-exchange": self.dlx_name,
            "x-dead-letter-routing-key": name,
        }
        if expires_s is not None:
            arguments["x-expires"] = int(expires_s * 1000)
        queue = await admin.declare_queue(name, durable=True, arguments=arguments)
        for key in bindings:
            await queue.bind(self.exchange_name, routing_key=key)

    async def publish(self, stored: StoredEvent) -> None:
        await self.publish_raw(
            stored.type, encode_message(stored), message_id=stored.event_id, seq=stored.seq
        )

    async def publish_raw(
        self, routing_key: str, body: bytes, *, message_id: str | None = None, seq: int = 0
    ) -> None:
        """Publish a body as is and wait for the broker's confirm."""
        if self._exchange is None:
            raise PublishRefused("not connected")
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            content_type="application/json",
            message_id=message_id,
            headers={"seq": seq},
        )
        try:
            await asyncio.wait_for(
                self._exchange.publish(message, routing_key=routing_key, mandatory=True),
                self._publish_timeout_s,
            )
        except aio_pika.exceptions.PublishError as exc:
            raise PublishRefused(f"unroutable: no queue is bound for '{routing_key}'") from exc
        except aio_pika.exceptions.DeliveryError as exc:
            raise PublishRefused(f"the broker refused the message: {exc}") from exc
        except TimeoutError as exc:
            raise PublishRefused(f"no confirm within {self._publish_timeout_s}s") from exc
        except Exception as exc:
            raise PublishRefused(f"publish failed: {exc!r}") from exc

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 100
    ) -> _AmqpSubscription:
        """Hand messages of ``queue`` to ``handler`` one at a time, in arrival order."""
        conn, _ = self._require()
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=prefetch)
        q = await channel.get_queue(queue, ensure=True)
        # Messages are handed over through a local queue so handling is sequential
        # whatever the client library does with callbacks.
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        worker = asyncio.create_task(self._work(queue, inbox, handler), name=f"amqp:{queue}")

        async def on_message(message: AbstractIncomingMessage) -> None:
            await inbox.put(message)

        tag = await q.consume(on_message, no_ack=False)
        return _AmqpSubscription(channel, q, tag, worker)

    async def _work(
        self, queue: str, inbox: asyncio.Queue[AbstractIncomingMessage], handler: Handler
    ) -> None:
        while True:
            message = await inbox.get()
            count = (message.headers or {}).get("x-delivery-count", 0)
            attempt = (count if isinstance(count, int) else 0) + 1
            try:
                await handler(Delivery(message.body, message.routing_key or "", attempt))
            except asyncio.CancelledError:
                raise  # unacked: the broker delivers it again
            except PoisonMessage as exc:
                log.error("dead-lettering a poison message on %s: %s", queue, exc)
                await self._dead_letter(queue, message.body, f"poison: {exc}", attempt)
                await _settle(message.reject(requeue=False))
            except Exception as exc:
                if attempt >= self._delivery_limit:
                    log.exception("handler failed on %s; dead-lettering it now", queue)
                    reason = f"failed {attempt} times, last: {exc!r}"
                    await self._dead_letter(queue, message.body, reason, attempt)
                    await _settle(message.reject(requeue=False))
                    continue
                log.warning("handler failed on %s (attempt %d); requeued", queue, attempt)
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))  # transient: back off
                await _settle(message.nack(requeue=True))
            else:
                await _settle(message.ack())

    async def _dead_letter(self, queue: str, body: bytes, reason: str, attempt: int) -> None:
        await tell_dead_letter(self.on_dead_letter, queue, body, reason, attempt)

    async def dead_letters(self, queue: str) -> list[bytes]:
        """Bodies waiting in ``queue``'s dead-letter queue; they stay there."""
        conn, _ = self._require()
        async with conn.channel() as channel:
            dlq = await channel.get_queue(dead_letter_queue(queue), ensure=True)
            held: list[AbstractIncomingMessage] = []
            while (message := await dlq.get(no_ack=False, fail=False)) is not None:
                held.append(message)
            for message in held:
                await message.nack(requeue=True)
            return [m.body for m in held]

    async def delete_queue(self, name: str) -> None:
        """Remove a queue and its dead-letter queue (tests and decommissioning)."""
        conn, _ = self._require()
        async with conn.channel() as channel:
            for queue in (name, dead_letter_queue(name)):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)

    async def delete_exchanges(self) -> None:
        conn, _ = self._require()
        async with conn.channel() as channel:
            for exchange in (self.exchange_name, self.dlx_name):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(exchange)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = self._publish_channel = self._exchange = self._admin = None


async def _settle(action: Any) -> None:
    # After a lost connection the broker redelivers; a failed ack changes nothing.
    try:
        await action
    except Exception:
        log.warning("could not settle a message (connection lost?); it will be redelivered")
