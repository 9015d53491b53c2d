"""A real SMTP server on loopback (aiosmtpd) receives each email once, also across an outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from coordinator.accounts import (
    Accounts,
    CreateClient,
    FlagBillingAnomaly,
    PauseClient,
    ResumeClient,
)
from eventlog.amqp_bus import RabbitBus
from eventlog.relay import OutboxRelay
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from notifier.outbox import NotifierOutbox
from notifier.service import EmlFileSender, NotifierService, SmtpSender, notifier_queue
from tests.stack import amqp_url_or_skip, free_port

pytestmark = pytest.mark.integration

OPS = "ops@vp.test"


class Inbox:
    """aiosmtpd handler: keeps every accepted message."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=default)
        self.messages.append((tuple(envelope.rcpt_tos), msg))
        return "250 OK"

    def ids(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for _, m in self.messages)


async def _until(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _notifier(tmp_path: Path, port: int) -> NotifierService:
    return NotifierService(
        NotifierOutbox(tmp_path / "notifier.sqlite3", OPS),
        SqliteEventStore(open_engine(tmp_path / "control.sqlite3")),
        SmtpSender("127.0.0.1", port, starttls=False, username=None, password=None, timeout_s=2),
        mail_from="VectorPanda <noreply@vp.test>",
        backoff_first_s=0.1,
        backoff_max_s=0.4,
    )


def test_each_email_arrives_once_even_after_smtp_comes_back(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))


async def _scenario(tmp_path: Path) -> None:
    port = free_port()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    acme = await accounts.handle(
        CreateClient("Acme, <evil@x.test> Bcc: evil@x.test", "acme@x.test", "free")
    )
    beta = await accounts.handle(CreateClient("Beta", "beta@x.test", "standard"))
    await accounts.handle(PauseClient(acme.client_id, "idle for 14 days", "scheduler", True))
    await accounts.handle(FlagBillingAnomaly(beta.client_id, "requests", 50000.0, 100.0, 24))

    sent: list[int] = []
    stop = asyncio.Event()
    notifier = _notifier(tmp_path, port)
    notifier.on_sent = lambda: sent.append(1)
    running = asyncio.create_task(notifier.run(stop, poll_s=0.05, idle_s=0.2))
    await _until("the first 4 emails", lambda: len(inbox.messages) >= 4)
    await asyncio.sleep(0.5)
    assert len(inbox.messages) == 4 and all(n == 1 for n in inbox.ids().values())
    recipients = sorted(r for rcpts, _ in inbox.messages for r in rcpts)
    assert recipients == sorted(["acme@x.test", OPS, "beta@x.test", OPS])
    assert all(m["Bcc"] is None for _, m in inbox.messages), "no header injection"

    # SMTP goes down for a while; events keep coming.
    smtp.stop()
    await accounts.handle(ResumeClient(acme.client_id, "admin"))
    await accounts.handle(PauseClient(beta.client_id, "payment failed", "scheduler", True))
    await asyncio.sleep(1.5)  # several failed attempts, backing off
    assert len(inbox.messages) == 4
    pending = notifier.outbox.due(now=time.time() + 3600)
    assert len(pending) == 4 and all(m.attempts >= 2 for m in pending), "retried with backoff"

    # The notifier restarts while SMTP is still down; nothing is lost or duplicated.
    stop.set()
    await running
    notifier.outbox.close()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    stop = asyncio.Event()
    notifier = _notifier(tmp_path, port)
    running = asyncio.create_task(notifier.run(stop, poll_s=0.05, idle_s=0.2))
    await _until("the 4 delayed emails", lambda: len(inbox.messages) >= 8)
    await asyncio.sleep(1.0)
    stop.set()
    await running
    smtp.stop()
    assert len(inbox.messages) == 8
    assert all(n == 1 for n in inbox.ids().values()), inbox.ids()
    subjects = sorted(str(m["Subject"]) for _, m in inbox.messages)
    assert sum("resumed" in s for s in subjects) == 2 and sum("paused" in s for s in subjects) == 4
    assert sum("usage alert" in s for s in subjects) == 2
    assert notifier.outbox.sent_count() == 8
    notifier.outbox.close()
    await accounts.close()


def test_notifier_follows_rabbitmq_and_writes_eml_without_smtp(tmp_path: Path) -> None:
    """`vectorpanda notifier` wiring: bus deliveries in, .eml files out, each event once."""
    asyncio.run(_over_rabbitmq(tmp_path, amqp_url_or_skip()))


async def _over_rabbitmq(tmp_path: Path, url: str) -> None:
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    store = SqliteEventStore(open_engine(tmp_path / "control.sqlite3"))
    relay_bus, notifier_bus = RabbitBus(url, exchange=exchange), RabbitBus(url, exchange=exchange)
    await relay_bus.connect()
    await notifier_bus.connect()
    mail = tmp_path / "mail"
    notifier = NotifierService(
        NotifierOutbox(tmp_path / "notifier.sqlite3", OPS),
        store,
        EmlFileSender(mail),
        mail_from="VectorPanda <noreply@vp.test>",
        bus=notifier_bus,
        queue=notifier_queue(exchange),
    )
    await notifier.prepare()
    stop = asyncio.Event()
    relay = OutboxRelay(store, relay_bus, poll_s=0.05)
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(notifier.run(stop, idle_s=0.2)),
    ]
    try:
        c = await accounts.handle(CreateClient("Gamma", "gamma@x.test", "free"))
        await accounts.handle(PauseClient(c.client_id, "unpaid", "scheduler", True))
        await accounts.handle(ResumeClient(c.client_id, "admin"))
        await _until("4 .eml files", lambda: len(list(mail.glob("*.eml"))) >= 4)
        await asyncio.sleep(0.5)
        emls = [message_from_bytes(p.read_bytes(), policy=default) for p in mail.glob("*.eml")]
        assert len(emls) == 4
        assert sorted(str(m["To"]).split("<")[-1].rstrip(">") for m in emls) == sorted(
            ["gamma@x.test", "gamma@x.test", OPS, OPS]
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await notifier_bus.delete_queue(notifier_queue(exchange))
        await notifier_bus.delete_exchanges()
        await relay_bus.close()
        await notifier_bus.close()
        notifier.outbox.close()
        await accounts.close()
