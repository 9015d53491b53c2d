"""One bad address never silences the others: internationalised addresses end to end,
and an email that can never be sent is quarantined (with its reason, alerted once)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from coordinator.accounts import Accounts, CreateClient, FlagBillingAnomaly, PauseClient
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from notifier.outbox import NotifierOutbox
from notifier.service import EmlFileSender, MailSender, NotifierService, SmtpSender
from tests.stack import free_port

pytestmark = pytest.mark.integration

OPS = "ops@vp.test"
JURGEN = "jürgen@example.com"
ORDINARY = "ordinary@x.test"


class Inbox:
    """aiosmtpd handler: keeps every accepted message with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[tuple[str, ...], Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        self.messages.append((tuple(envelope.rcpt_tos), msg))
        return "250 OK"

    def to(self, address: str) -> list[Any]:
        return [m for rcpts, m in self.messages if address in rcpts]


async def _until(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _notifier(tmp_path: Path, sender: MailSender) -> NotifierService:
    return NotifierService(
        NotifierOutbox(tmp_path / "notifier.sqlite3", OPS),
        SqliteEventStore(open_engine(tmp_path / "control.sqlite3")),
        sender,
        mail_from="VectorPanda <noreply@vp.test>",
        backoff_first_s=0.1,
        backoff_max_s=0.4,
    )


def _smtp(port: int) -> SmtpSender:
    return SmtpSender("127.0.0.1", port, starttls=False, username=None, password=None, timeout_s=5)


async def _two_paused_clients(accounts: Accounts) -> tuple[str, str]:
    jurgen = await accounts.handle(CreateClient("Jürgen GmbH", JURGEN, "free"))
    ordinary = await accounts.handle(CreateClient("Ordinary", ORDINARY, "free"))
    for client in (jurgen, ordinary):
        await accounts.handle(PauseClient(client.client_id, "idle for 14 days", "scheduler", True))
    return jurgen.client_id, ordinary.client_id


def test_without_smtputf8_the_address_is_quarantined_and_the_rest_flows(tmp_path: Path) -> None:
    asyncio.run(_without_smtputf8(tmp_path))


async def _without_smtputf8(tmp_path: Path) -> None:
    port = free_port()
    inbox = Inbox()
    # aiosmtpd's Controller offers SMTPUTF8 unless told not to
    smtp = Controller(inbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    smtp.start()
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    notifier = _notifier(tmp_path, _smtp(port))
    quarantined: list[int] = []
    notifier.on_quarantined = lambda: quarantined.append(1)
    stop = asyncio.Event()
    running = asyncio.create_task(notifier.run(stop, poll_s=0.05, idle_s=0.2))
    try:
        _, ordinary_id = await _two_paused_clients(accounts)
        await _until("the ordinary client's email", lambda: inbox.to(ORDINARY))
        await _until("the quarantine alert", lambda: _alerts(inbox))
        dead = notifier.outbox.dead()
        assert [(d.recipient, d.event_type) for d in dead] == [(JURGEN, "client.paused")]
        assert "permanent failure" in dead[0].reason and "SMTPUTF8" in dead[0].reason
        assert dead[0].attempts == 1, "a permanent failure is not retried"
        # the notifier keeps working: a later event for another client is delivered
        await accounts.handle(FlagBillingAnomaly(ordinary_id, "requests", 5e4, 100.0, 24))
        await _until("the later email", lambda: len(inbox.to(ORDINARY)) == 2)
        await asyncio.sleep(0.5)
        assert len(_alerts(inbox)) == 1 and quarantined == [1], "alerted once"
        assert JURGEN in _alerts(inbox)[0].get_body(("plain",)).get_content()
        assert len(inbox.to(OPS)) == 4  # two pauses, one anomaly, one alert
        assert not inbox.to(JURGEN)
    finally:
        stop.set()
        await running
        notifier.outbox.close()
        smtp.stop()

    # After the fix (a server offering SMTPUTF8), `notifier retry-dead` sends it.
    smtp = Controller(inbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    smtp.start()
    try:
        _retry_dead_cli(tmp_path)
        notifier = _notifier(tmp_path, _smtp(port))
        stop = asyncio.Event()
        running = asyncio.create_task(notifier.run(stop, poll_s=0.05, idle_s=0.2))
        await _until("the retried email", lambda: inbox.to(JURGEN))
        stop.set()
        await running
        assert notifier.outbox.dead() == []
        notifier.outbox.close()
    finally:
        smtp.stop()
        await accounts.close()


def _alerts(inbox: Inbox) -> list[Any]:
    return [m for m in inbox.to(OPS) if "quarantined" in str(m["Subject"])]


def _retry_dead_cli(data: Path) -> None:
    (data / "vectorpanda.env").write_text(f"VP_OPS_EMAIL={OPS}\n")
    (data / "vectorpanda.env").chmod(0o600)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vectorpanda",
            "notifier",
            "retry-dead",
            "--data-dir",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "1 quarantined email(s) put back" in out.stdout, out.stdout + out.stderr


def test_with_smtputf8_and_as_eml_every_address_is_delivered(tmp_path: Path) -> None:
    asyncio.run(_with_smtputf8(tmp_path))


async def _with_smtputf8(tmp_path: Path) -> None:
    port = free_port()
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    smtp.start()
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    mail = tmp_path / "mail"
    smtp_notifier = _notifier(tmp_path / "smtp", _smtp(port))
    eml_notifier = _notifier(tmp_path / "eml", EmlFileSender(mail))
    # both notifiers read the same event log; each has its own outbox
    for n in (smtp_notifier, eml_notifier):
        n.consumer._events = SqliteEventStore(open_engine(tmp_path / "control.sqlite3"))
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(n.run(stop, poll_s=0.05, idle_s=0.2))
        for n in (smtp_notifier, eml_notifier)
    ]
    try:
        await _two_paused_clients(accounts)
        await _until("both clients' emails", lambda: inbox.to(JURGEN) and inbox.to(ORDINARY))
        to_jurgen = inbox.to(JURGEN)[0]
        assert "jürgen@example.com" in str(to_jurgen["To"])
        assert "Jürgen GmbH" in to_jurgen["Subject"]
        await _until("4 .eml files", lambda: len(list(mail.glob("*.eml"))) >= 4)
        emls = [message_from_bytes(p.read_bytes(), policy=default) for p in mail.glob("*.eml")]
        tos = sorted(str(m["To"]).split("<")[-1].rstrip(">") for m in emls)
        assert tos == sorted([JURGEN, ORDINARY, OPS, OPS])
        assert smtp_notifier.outbox.dead() == [] and eml_notifier.outbox.dead() == []
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for n in (smtp_notifier, eml_notifier):
            n.outbox.close()
        smtp.stop()
        await accounts.close()
