"""Poison messages on the projections and key-cache queues (real RabbitMQ): each consumer
dead-letters the message with its reason, alerts operations once, and goes on."""

from __future__ import annotations

import asyncio
import time
import uuid
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import orjson
import pytest

from coordinator.accounts import Accounts, CreateClient, PauseClient
from eventlog.amqp_bus import RabbitBus
from eventlog.dead_letters import DeadLetterBook
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from notifier.outbox import NotifierOutbox
from notifier.service import EmlFileSender, NotifierService
from projections.service import projections_queue
from tests.stack import amqp_url_or_skip
from vectorpanda.server.events import build_event_services
from vectorpanda.settings import load_settings

pytestmark = pytest.mark.integration

OPS = "ops@vp.test"


async def _until(what: str, check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _revocation_nobody_logged() -> bytes:
    """A well-formed record of an event that is not in the log and cannot be applied."""
    return orjson.dumps(
        {
            "seq": 999_999,
            "event_id": uuid.uuid4().hex,
            "type": "api_key.revoked",
            "schema_version": 1,
            "occurred_at": "2026-01-01T00:00:00.000000Z",
            "actor": "nobody",
            "client_id": "c0",
            "data": {},
            "prev_hash": "0" * 64,
            "hash": "f" * 64,
        }
    )


def test_poison_on_projections_and_key_cache_is_quarantined_once(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path, amqp_url_or_skip()))


async def _scenario(tmp_path: Path, url: str) -> None:
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    settings = load_settings(
        tmp_path,
        amqp_url=url,
        amqp_exchange=exchange,
        ops_email=OPS,
        projections_in_process=True,
        bus_delivery_limit=4,
        coordinator_id="poison-test",
    )
    accounts = Accounts(settings.control_db, b"p" * 32)
    counted: list[str] = []
    services = build_event_services(settings, accounts, counted.append)
    assert services.projector is not None and services.eviction is not None
    mail = tmp_path / "mail"
    notifier = NotifierService(
        NotifierOutbox(settings.notifier_db, OPS),
        SqliteEventStore(open_engine(settings.control_db)),
        EmlFileSender(mail),
        mail_from="VectorPanda <noreply@vp.test>",
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(services.run(stop)),
        asyncio.create_task(notifier.run(stop, poll_s=0.05, idle_s=0.2)),
    ]
    injector = RabbitBus(url, exchange=exchange)
    projections = projections_queue(exchange)
    book = DeadLetterBook(settings.dead_letters_db)
    try:
        await asyncio.wait_for(services.ready.wait(), 30)
        await injector.connect()
        poison = _revocation_nobody_logged()
        for body in (b"\x00 not json", poison):
            await injector.publish_raw("api_key.revoked", body)  # both queues take it
        await _until("4 dead letters", lambda: len(book.all()) == 4)
        by_queue: dict[str, list[str]] = {}
        for letter in book.all():
            by_queue.setdefault(letter.queue, []).append(letter.reason)
        assert set(by_queue) == {projections, services.eviction_queue}
        assert any("not JSON" in r for r in by_queue[projections])
        assert any("not in the event log" in r for r in by_queue[projections])
        assert any("cannot be applied" in r for r in by_queue[services.eviction_queue])
        assert sorted(counted) == sorted([projections] * 2 + [services.eviction_queue] * 2)
        # the consumers go on with the next events
        created = await accounts.handle(CreateClient("After", "after@x.test", "free"))
        await accounts.handle(PauseClient(created.client_id, "unpaid", "scheduler", True))
        head = services.store.head().seq
        projector, eviction = services.projector, services.eviction
        await _until(
            "the projection to apply them", lambda: projector.consumer.checkpoint_hint == head
        )
        await _until("the key cache to apply the pause", lambda: eviction.applied >= 1)
        # the same poison again: recorded again, alerted no more
        await injector.publish_raw("api_key.revoked", poison)
        await _until("the repeat to be recorded", lambda: len(counted) == 6)
        await _until("4 alert emails", lambda: len(_alert_emls(mail)) >= 4)
        await asyncio.sleep(1.0)
        alerts = _alert_emls(mail)
        assert len(alerts) == 4, [str(m["Subject"]) for m in alerts]  # one per dead letter
        assert all(str(m["To"]).endswith(f"<{OPS}>") or str(m["To"]) == OPS for m in alerts)
        assert {letter.times for letter in book.all()} == {1, 2}
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in (projections, services.eviction_queue, f"{exchange}.notifier"):
            await injector.delete_queue(queue)
        await injector.delete_exchanges()
        await injector.close()
        book.close()
        notifier.outbox.close()
        await accounts.close()


def _alert_emls(mail: Path) -> list[Any]:
    messages = [message_from_bytes(p.read_bytes(), policy=default) for p in mail.glob("*.eml")]
    return [m for m in messages if "dead-lettered" in str(m["Subject"])]
