"""``vectorpanda notifier``: events in, emails out, exactly once per (event, recipient).

Two loops: the checkpointed consumer fills the outbox from the event log (fed
by the bus, or by polling the log without one), and the delivery loop sends
what is due, retrying with exponential backoff while SMTP is down.

A failure is transient (server away, 4xx: retry later) or permanent (the
message cannot be built, the server refuses it for good, an internationalised
address on a server without SMTPUTF8): a permanent failure, or more than
``max_attempts`` transient ones, quarantines that email with its reason, tells
the operators once, and delivery goes on with the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from eventlog.bus import Bus, Delivery
from eventlog.consumer import CheckpointedConsumer, EventReader
from eventlog.stopping import wait_or_stop
from notifier.messages import NOTIFIED_TYPES, Notice, build_email
from notifier.outbox import NotifierOutbox, PendingMail

log = logging.getLogger("vectorpanda.notifier")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
# With the backoff above, about an hour of transient failures before quarantine.
MAX_ATTEMPTS = 20
CONNECT_RETRY_S = 2.0  # while the bus is away at start-up


class PermanentFailure(Exception):
    """This email can never be sent as it is: quarantine it, do not retry."""


def is_permanent(exc: BaseException) -> bool:
    """Whether a sending error will recur however often the email is retried."""
    if isinstance(exc, PermanentFailure | UnicodeError):
        return True
    # Looked up, not imported: aiosmtplib loads with the first email sent over SMTP (a
    # process that writes .eml files never holds it), and only it raises its errors.
    aiosmtplib = sys.modules.get("aiosmtplib")
    if aiosmtplib is None:
        return False
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return "SMTPUTF8" in str(exc)  # STARTTLS/AUTH missing is configuration, fixable
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return False  # our own From: every email would fail; fix the configuration
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code >= 500
    return False


def notifier_queue(exchange: str) -> str:
    return f"{exchange}.notifier"


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpSender:
    """aiosmtplib to the configured server; STARTTLS and credentials from the env file."""

    def __init__(
        self,
        host: str,
        port: int,
        starttls: bool,
        username: str | None,
        password: str | None,
        timeout_s: float = 30.0,
    ) -> None:
        self._host, self._port, self._starttls = host, port, starttls
        self._username, self._password = username, password
        self._timeout = timeout_s

    async def send(self, message: EmailMessage) -> None:
        import aiosmtplib

        await aiosmtplib.send(
            message,
            hostname=self._host,
            port=self._port,
            start_tls=self._starttls,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
        )


class EmlFileSender:
    """No SMTP configured: each email becomes an ``.eml`` file, and the log says where."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        def write() -> Path:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex}.eml"
            temp = path.with_suffix(".tmp")
            temp.write_bytes(message.as_bytes())
            temp.rename(path)
            return path

        path = await asyncio.to_thread(write)
        log.info("no SMTP configured: wrote email '%s' to %s", message["Subject"], path)


class NotifierService:
    """Outbox filling and delivery, until ``stop``."""

    def __init__(
        self,
        outbox: NotifierOutbox,
        events: EventReader,
        sender: MailSender,
        *,
        mail_from: str,
        bus: Bus | None = None,
        queue: str = "vectorpanda.events.notifier",
        on_sent: Callable[[], None] | None = None,
        on_failed: Callable[[], None] | None = None,
        on_quarantined: Callable[[], None] | None = None,
        backoff_first_s: float = BACKOFF_FIRST_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.outbox = outbox
        self.consumer = CheckpointedConsumer(outbox, events)
        self.sender = sender
        self.mail_from = mail_from
        self.bus = bus
        self.queue = queue
        self.on_sent = on_sent
        self.on_failed = on_failed
        self.on_quarantined = on_quarantined
        self._first, self._max = backoff_first_s, backoff_max_s
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()

    async def prepare(self) -> None:
        if self.bus is not None:
            await self.bus.declare_queue(self.queue, list(NOTIFIED_TYPES))

    async def deliver_due(self) -> int:
        """Send every email due now; returns how many were accepted.

        The emails are claimed first (see ``NotifierOutbox.claim``); stopped midway, this
        hands the ones it has not settled back, so a restart sends them at once.
        """
        sent = 0
        claimed = await asyncio.to_thread(self.outbox.claim, time.time())
        settled = 0
        try:
            for mail in claimed:
                if await self._deliver(mail):
                    sent += 1
                settled += 1
        except BaseException:
            self.outbox.release(claimed[settled:])  # short, and the loop is stopping anyway
            raise
        return sent

    async def _deliver(self, mail: PendingMail) -> bool:
        notice = Notice(mail.event_id, mail.event_type, mail.client_id, mail.client_name, mail.data)
        domain = self.mail_from.rpartition("@")[2].strip(">") or "localhost"
        try:
            try:
                message = build_email(notice, self.mail_from, mail.recipient, domain)
            except Exception as exc:
                raise PermanentFailure(f"the email cannot be built: {exc}") from exc
            await self.sender.send(message)
        except Exception as exc:
            await self._failed(mail, exc)
            return False
        await asyncio.to_thread(self.outbox.mark_sent, mail, time.time())
        if self.on_sent is not None:
            self.on_sent()
        return True

    async def _failed(self, mail: PendingMail, exc: Exception) -> None:
        if is_permanent(exc) or mail.attempts + 1 >= self.max_attempts:
            await self._quarantine(mail, exc)
            return
        delay = min(self._first * 2**mail.attempts, self._max)
        log.warning(
            "email for event %s not sent (attempt %d): %s; retrying in %.0f s",
            mail.event_id,
            mail.attempts + 1,
            exc,
            delay,
        )
        await asyncio.to_thread(self.outbox.mark_failed, mail, time.time() + delay, str(exc))
        if self.on_failed is not None:
            self.on_failed()

    async def _quarantine(self, mail: PendingMail, exc: Exception) -> None:
        kind = "permanent failure" if is_permanent(exc) else f"{mail.attempts + 1} failed attempts"
        reason = f"{kind}: {exc}"
        log.error(
            "email for event %s to %s quarantined (%s); `vectorpanda notifier retry-dead` "
            "sends it again after a fix",
            mail.event_id,
            mail.recipient,
            reason,
        )
        await asyncio.to_thread(self.outbox.quarantine, mail, time.time(), reason)
        if self.on_quarantined is not None:
            self.on_quarantined()
        if mail.is_alert:
            return  # an alert about an alert would loop; the log line above must do
        text = (
            f"The email for event {mail.event_id} ({mail.event_type}, client "
            f"{mail.client_id}) to {mail.recipient} was quarantined and will not be "
            f"retried.\nReason: {reason}\n\nOther emails keep flowing. After fixing the "
            "cause, run: vectorpanda notifier retry-dead"
        )
        await asyncio.to_thread(
            self.outbox.queue_alert,
            f"dead-mail:{mail.event_id}:{mail.recipient}",
            "VectorPanda: an email was quarantined",
            text,
        )
        self._wake.set()

    async def _feed(self, stop: asyncio.Event, poll_s: float) -> None:
        if self.bus is None:
            while not stop.is_set():
                try:
                    await self.consumer.catch_up()
                except Exception:
                    log.exception("catching up with the event log failed; retrying")
                self._wake.set()
                await wait_or_stop(stop, poll_s)
            return

        async def handle(delivery: Delivery) -> None:
            await self.consumer.handle(delivery)
            self._wake.set()

        subscription = await self.bus.consume(self.queue, handle)
        try:
            await stop.wait()
        finally:
            await subscription.cancel()

    async def _deliver_loop(self, stop: asyncio.Event, idle_s: float) -> None:
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:
                log.exception("delivery round failed")
            next_due = await asyncio.to_thread(self.outbox.next_due)
            wait = idle_s if next_due is None else max(0.05, min(idle_s, next_due - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def serve(self, stop: asyncio.Event, connect_retry_s: float = CONNECT_RETRY_S) -> None:
        """Connect the bus (if any, retrying), run until ``stop``, then close bus and outbox."""
        bus = self.bus
        try:
            while bus is not None and not stop.is_set():
                try:
                    await bus.connect()
                    await self.prepare()
                    break
                except Exception as exc:
                    log.warning("event bus unavailable (%s); retrying", exc)
                    await wait_or_stop(stop, connect_retry_s)
            if not stop.is_set():
                await self.run(stop)
        finally:
            if bus is not None:
                await bus.close()
            self.outbox.close()

    async def run(self, stop: asyncio.Event, poll_s: float = 0.5, idle_s: float = 5.0) -> None:
        """Catch up from the log, then follow it and deliver until ``stop``."""
        await self.consumer.catch_up()
        feeding = asyncio.create_task(self._feed(stop, poll_s))
        delivering = asyncio.create_task(self._deliver_loop(stop, idle_s))
        try:
            await stop.wait()
        finally:
            for task in (feeding, delivering):
                task.cancel()
            await asyncio.gather(feeding, delivering, return_exceptions=True)
