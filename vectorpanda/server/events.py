"""Composition of the event machinery: bus, outbox relay and bus consumers.

Part of the composition root (``vectorpanda.server.coordinator`` calls it). With
``VP_AMQP_URL`` the bus is RabbitMQ; without it, the local in-process bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from coordinator.accounts import Accounts
from coordinator.accounts.eviction import (
    KEY_CACHE_BINDINGS,
    QUEUE_EXPIRES_S,
    KeyCacheEviction,
    key_cache_queue,
)
from eventlog.anchors import signing_key
from eventlog.bus import Bus, DeadLetterHook, Subscription
from eventlog.database import is_postgres
from eventlog.dead_letters import DeadLetterBook
from eventlog.hashchain import ChainReport
from eventlog.local_bus import LocalBus
from eventlog.relay import OutboxRelay
from eventlog.relay_leader import LeaderOutbox, RelayLeadership
from eventlog.stopping import wait_or_stop
from eventlog.store import SqliteEventStore
from notifier.messages import NOTIFIED_TYPES
from notifier.outbox import queue_operations_alert
from notifier.service import notifier_queue
from projections.audit_store import AuditProjection
from projections.audit_verify import run_verify
from projections.service import ProjectorService, projections_queue
from vectorpanda.control_db import (
    audit_database,
    control_engine,
    dead_letters_location,
    shared_store,
)
from vectorpanda.settings import Settings

log = logging.getLogger("vectorpanda.events")

CONNECT_RETRY_S = 2.0


def build_bus(settings: Settings, on_dead_letter: DeadLetterHook | None = None) -> Bus | None:
    """RabbitMQ when configured, else None (the caller picks the local bus or polling)."""
    if settings.amqp_url is None or not settings.amqp_url.get_secret_value():
        return None
    # aio-pika (about 3 MiB of RSS) only where a broker is configured
    from eventlog.amqp_bus import RabbitBus

    return RabbitBus(
        settings.amqp_url.get_secret_value(),
        exchange=settings.amqp_exchange,
        delivery_limit=settings.bus_delivery_limit,
        on_dead_letter=on_dead_letter,
    )


def dead_letter_hook(
    settings: Settings, count: Callable[[str], None] | None = None
) -> DeadLetterHook:
    """Record each dead letter with its reason, count it, and email the operators once."""
    book = DeadLetterBook(shared_store(settings, settings.dead_letters_db))
    where = dead_letters_location(settings)

    async def on_dead_letter(queue: str, body: bytes, reason: str, attempts: int) -> None:
        digest, new = await asyncio.to_thread(book.record, queue, body, reason, attempts)
        if count is not None:
            count(queue)
        if not new:
            return
        text = (
            f"A message on {queue} was given up on after {attempts} attempt(s) and moved to "
            f"the dead-letter record ({where}, digest {digest}).\n"
            f"Reason: {reason}\n\nThe consumer went on with the next message."
        )
        await asyncio.to_thread(
            queue_operations_alert,
            shared_store(settings, settings.notifier_db),
            settings.ops_email,
            f"dead-letter:{queue}:{digest}",
            f"VectorPanda: a message on {queue} was dead-lettered",
            text,
        )

    return on_dead_letter


def anchor_email(settings: Settings) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """The daily operations email with the census's signed chain head (VP_ANCHOR_EMAIL).

    A mailbox is one more place that outlives the machine: saved as a ``.json`` file,
    the anchor is checked by ``vectorpanda audit verify --anchors <dir>``.
    """

    async def send(anchor: dict[str, Any]) -> None:
        body = orjson.dumps(anchor, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()
        text = (
            f"The event log's head at {anchor['anchored_at']} ({anchor['source']}): "
            f"seq {anchor['seq']}, hash {anchor['hash']}, signed with the anchor key.\n\n"
            "Keep this email. To check later that the log still reaches this head, save "
            "the JSON below as a .json file in a directory DIR and run:\n"
            "  vectorpanda audit verify --anchors DIR\n\n"
            f"{body}\n"
        )
        await asyncio.to_thread(
            queue_operations_alert,
            shared_store(settings, settings.notifier_db),
            settings.ops_email,
            f"head-anchor:{anchor['source']}",
            f"VectorPanda: signed event-log head, seq {anchor['seq']} ({anchor['source']})",
            text,
        )

    return send


def tenant_unavailable_alert(settings: Settings) -> Callable[[str, float, str], Awaitable[None]]:
    """The router's alert for a tenant unservable past the bound: one operations email."""

    async def alert(tenant: str, seconds: float, reason: str) -> None:
        text = (
            f"Tenant {tenant} has had no worker able to serve it for {seconds:.0f} s "
            f"(bound VP_TENANT_UNAVAILABLE_ALERT_S={settings.tenant_unavailable_alert_s:g}).\n"
            f"Last reason: {reason}\n\nThe coordinator keeps retrying the hand-over with "
            "backoff; check the workers' logs and GET /admin/v1/workers."
        )
        await asyncio.to_thread(
            queue_operations_alert,
            shared_store(settings, settings.notifier_db),
            settings.ops_email,
            f"tenant-unavailable:{tenant}:{int(time.time())}",
            f"VectorPanda: tenant {tenant} is unavailable",
            text,
        )

    return alert


def coordinator_id(settings: Settings) -> str:
    return settings.coordinator_id or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class EventServices:
    """What one process runs of the event machinery."""

    bus: Bus
    store: SqliteEventStore
    relay: OutboxRelay | None = None
    projector: ProjectorService | None = None
    eviction: KeyCacheEviction | None = None
    eviction_queue: str = ""
    # Declared even where nobody consumes them here, so events wait in the
    # broker for their service instead of being refused as unroutable.
    durable_queues: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def _prepare(self) -> list[Subscription]:
        await self.bus.connect()
        for name, bindings in self.durable_queues.items():
            await self.bus.declare_queue(name, bindings)
        if self.projector is not None:
            await self.projector.prepare()
        subscriptions: list[Subscription] = []
        if self.eviction is not None:
            await self.bus.declare_queue(
                self.eviction_queue, KEY_CACHE_BINDINGS, expires_s=QUEUE_EXPIRES_S
            )
            subscriptions.append(await self.bus.consume(self.eviction_queue, self.eviction.handle))
        return subscriptions

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying while the broker is away), then relay and consume until stop."""
        subscriptions: list[Subscription] | None = None
        while subscriptions is None and not stop.is_set():
            try:
                subscriptions = await self._prepare()
            except Exception as exc:
                log.warning("event bus unavailable (%s); commands still succeed, retrying", exc)
                with contextlib.suppress(Exception):
                    await self.bus.close()
                await wait_or_stop(stop, CONNECT_RETRY_S)
        if subscriptions is None:
            return
        tasks = []
        if self.projector is not None:
            tasks.append(asyncio.create_task(self.projector.run(stop), name="projector"))
        if self.relay is not None:
            tasks.append(asyncio.create_task(self.relay.run(stop), name="outbox-relay"))
        self.ready.set()
        try:
            await stop.wait()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for subscription in subscriptions:
                with contextlib.suppress(Exception):
                    await subscription.cancel()
            await self.bus.close()
            if self.projector is not None:
                self.projector.projection.close()


def build_event_services(
    settings: Settings,
    accounts: Accounts,
    count_dead_letter: Callable[[str], None] | None = None,
) -> EventServices:
    """The coordinator's share: relay, key-cache eviction and (embedded) the projector."""
    store = SqliteEventStore(control_engine(settings))
    on_dead_letter = dead_letter_hook(settings, count_dead_letter)
    rabbit = build_bus(settings, on_dead_letter)
    bus: Bus = (
        rabbit if rabbit is not None else LocalBus(settings.bus_delivery_limit, on_dead_letter)
    )
    services = EventServices(bus=bus, store=store)
    if settings.relay_enabled:
        # On PostgreSQL every coordinator runs a relay and the lock holder alone publishes.
        outbox = LeaderOutbox(store, RelayLeadership(store.engine))
        services.relay = OutboxRelay(outbox if is_postgres(store.engine) else store, bus)
        accounts.uow.subscribe(services.relay.wake)
    services.eviction = KeyCacheEviction(accounts.key_cache)
    services.eviction_queue = key_cache_queue(settings.amqp_exchange, coordinator_id(settings))
    services.durable_queues[projections_queue(settings.amqp_exchange)] = ("#",)
    services.durable_queues[notifier_queue(settings.amqp_exchange)] = NOTIFIED_TYPES
    in_process = settings.projections_in_process
    if in_process or (in_process is None and rabbit is None):
        services.projector = ProjectorService(
            AuditProjection.at(audit_database(settings)),
            store,
            bus,
            projections_queue(settings.amqp_exchange),
        )
    return services


def audit_verifier(
    settings: Settings, store: SqliteEventStore
) -> Callable[[], Awaitable[ChainReport]]:
    """``GET /admin/v1/audit/verify``: the chain plus the live tables against a replay."""

    key = None
    if settings.anchor_signing_key is not None:
        key = signing_key(settings.anchor_signing_key.get_secret_value()).public_key()

    async def verify() -> ChainReport:
        # The anchors written so far must still be reached: a cut-off tail shows here too.
        verdict = await asyncio.to_thread(
            run_verify,
            store,
            audit_database(settings),
            anchors_dir=settings.anchors_dir,
            anchor_key=key,
        )
        return ChainReport(
            ok=verdict.ok,
            events=verdict.report.events,
            head_hash=verdict.report.head_hash,
            mismatches=verdict.mismatches,
        )

    return verify


async def run_projections(settings: Settings, stop: asyncio.Event) -> None:
    """``vectorpanda projections``: follow RabbitMQ, or poll the log without a broker."""
    store = SqliteEventStore(control_engine(settings))
    bus = build_bus(settings, dead_letter_hook(settings))
    projector = ProjectorService(
        AuditProjection.at(audit_database(settings)),
        store,
        bus,
        projections_queue(settings.amqp_exchange),
    )
    if bus is None:
        log.info("no VP_AMQP_URL: projecting by polling the event log")
        await projector.run(stop)
        projector.projection.close()
        return
    services = EventServices(bus=bus, store=store, projector=projector)
    await services.run(stop)
