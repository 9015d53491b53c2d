"""Transient failures are retried, permanent ones quarantined once; addresses may be
internationalised; an unreadable event never holds up the emails after it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from eventlog.events import ClientCreated, ClientPaused
from eventlog.memory_store import InMemoryEventStore
from notifier.messages import Notice, UnusableAddress, build_email, mailbox
from notifier.outbox import NotifierOutbox
from notifier.service import NotifierService, is_permanent

OPS = "ops@vp.test"


class ScriptedSender:
    """Fails for the recipients it is told to, with the error it is given."""

    def __init__(self) -> None:
        self.failures: dict[str, Exception] = {}
        self.sent: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        error = self.failures.get(str(message["To"]).split("<")[-1].rstrip(">"))
        if error is not None:
            raise error
        self.sent.append(message)


def _service(tmp_path: Path, store: InMemoryEventStore, sender: ScriptedSender) -> NotifierService:
    return NotifierService(
        NotifierOutbox(tmp_path / "n.sqlite3", OPS),
        store,
        sender,
        mail_from="VectorPanda <noreply@vp.test>",
        backoff_first_s=0.0,
        max_attempts=3,
    )


def _two_paused(store: InMemoryEventStore) -> None:
    store.append(
        [
            ClientCreated(client_id="c1", name="Bad", email="bad@x.test", tier="free"),
            ClientCreated(client_id="c2", name="Good", email="good@x.test", tier="free"),
            ClientPaused(client_id="c1", reason="idle"),
            ClientPaused(client_id="c2", reason="idle"),
        ],
        actor="admin",
    )


def _recipients(sender: ScriptedSender) -> list[str]:
    return [str(m["To"]).split("<")[-1].rstrip(">") for m in sender.sent]


async def _deliver_all(service: NotifierService, rounds: int = 5) -> None:
    for _ in range(rounds):
        await service.deliver_due()


def test_a_permanent_failure_is_quarantined_at_once_alerted_once_and_the_rest_flows(
    tmp_path: Path,
) -> None:
    store, sender = InMemoryEventStore(), ScriptedSender()
    _two_paused(store)
    refused = aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(550, "no such user", "bad@x.test")]
    )
    sender.failures["bad@x.test"] = refused
    service = _service(tmp_path, store, sender)
    service.outbox.apply(store.read(0, 100))
    asyncio.run(_deliver_all(service))
    dead = service.outbox.dead()
    assert [(d.recipient, d.attempts) for d in dead] == [("bad@x.test", 1)]
    assert "permanent failure" in dead[0].reason and "no such user" in dead[0].reason
    assert sorted(_recipients(sender)) == sorted(["good@x.test", OPS, OPS, OPS])
    alerts = [m for m in sender.sent if "quarantined" in str(m["Subject"])]
    assert len(alerts) == 1
    # after a fix, retry-dead sends it, and no second alert is raised
    del sender.failures["bad@x.test"]
    assert service.outbox.retry_dead() == 1
    asyncio.run(_deliver_all(service))
    assert "bad@x.test" in _recipients(sender) and service.outbox.dead() == []
    assert len([m for m in sender.sent if "quarantined" in str(m["Subject"])]) == 1
    service.outbox.close()


def test_transient_failures_are_retried_then_quarantined_after_max_attempts(
    tmp_path: Path,
) -> None:
    store, sender = InMemoryEventStore(), ScriptedSender()
    _two_paused(store)
    sender.failures["bad@x.test"] = aiosmtplib.SMTPServerDisconnected("gone")
    service = _service(tmp_path, store, sender)
    service.outbox.apply(store.read(0, 100))
    asyncio.run(_deliver_all(service, rounds=2))
    assert service.outbox.dead() == []  # still being retried
    asyncio.run(_deliver_all(service, rounds=3))
    dead = service.outbox.dead()
    assert [(d.recipient, d.attempts) for d in dead] == [("bad@x.test", 3)]
    assert dead[0].reason.startswith("3 failed attempts")
    service.outbox.close()


def test_a_failing_alert_is_not_alerted_about(tmp_path: Path) -> None:
    store, sender = InMemoryEventStore(), ScriptedSender()
    _two_paused(store)
    sender.failures["bad@x.test"] = aiosmtplib.SMTPResponseException(554, "rejected")
    sender.failures[OPS] = aiosmtplib.SMTPResponseException(554, "rejected")
    service = _service(tmp_path, store, sender)
    service.outbox.apply(store.read(0, 100))
    asyncio.run(_deliver_all(service))
    dead = service.outbox.dead()
    # bad@ and the ops copies of both pauses, then one alert about each of those three,
    # which fail too and are quarantined without an alert about an alert
    assert sorted(d.event_type for d in dead).count("operations.alert") == 3 and len(dead) == 6
    assert not [d for d in dead if d.event_id.startswith("alert:dead-mail:alert:")]
    assert _recipients(sender) == ["good@x.test"]
    service.outbox.close()


def test_an_unreadable_event_is_quarantined_and_does_not_hold_up_later_ones(
    tmp_path: Path,
) -> None:
    store = InMemoryEventStore()
    _two_paused(store)
    events = store.read(0, 100)
    broken = dataclasses.replace(events[2], data={"reason": {"not": "a string"}})
    outbox = NotifierOutbox(tmp_path / "n.sqlite3", OPS)
    assert outbox.apply([*events[:2], broken, events[3]]) == 4
    dead = outbox.dead()
    assert {d.recipient for d in dead} == {"bad@x.test", OPS}
    assert all("cannot be read" in d.reason for d in dead)
    due = outbox.due(now=time.time())
    assert sorted((m.event_type, m.recipient) for m in due) == [
        ("client.paused", "good@x.test"),
        ("client.paused", OPS),
        ("operations.alert", OPS),
    ]
    outbox.close()


def test_internationalised_addresses_use_idna_and_smtputf8() -> None:
    notice = Notice("e1", "client.paused", "c1", "Jürgen", {"reason": "idle"})
    ascii_local = build_email(notice, "VP <noreply@vp.test>", "a@bücher.example", "vp.test")
    assert ascii_local["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert not ascii_local.policy.utf8
    assert b"xn--bcher-kva.example" in ascii_local.as_bytes()
    utf8 = build_email(notice, "VP <noreply@vp.test>", "jürgen@example.com", "vp.test")
    assert utf8.policy.utf8 and "jürgen@example.com".encode() in utf8.as_bytes()
    assert str(utf8["Message-ID"]).endswith("@vp.test>")
    for bad in ("no-at-sign", "a@" + "x" * 64 + ".com", "a@\x00.com"):
        with pytest.raises(UnusableAddress):
            mailbox(bad)


def test_error_classification() -> None:
    assert is_permanent(aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"))
    assert not is_permanent(aiosmtplib.SMTPNotSupported("STARTTLS extension not supported"))
    assert not is_permanent(aiosmtplib.SMTPResponseException(451, "try later"))
    assert is_permanent(aiosmtplib.SMTPResponseException(550, "no"))
    assert not is_permanent(aiosmtplib.SMTPSenderRefused(550, "bad sender", "x@y"))
    assert not is_permanent(ConnectionRefusedError())
    assert not is_permanent(TimeoutError())
