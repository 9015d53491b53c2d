"""Composition of the operating duties: the scheduler and the notifier.

Part of the composition root. ``vectorpanda scheduler`` and ``vectorpanda
notifier`` run these as their own processes; ``vectorpanda up`` runs them as
tasks next to the coordinator. The scheduler always acts through the admin API
with VP_SCHEDULER_TOKEN (loopback HTTP under ``up``), so it is recorded as
actor ``scheduler`` either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventlog.store import SqliteEventStore
from notifier.outbox import NotifierOutbox
from notifier.service import EmlFileSender, MailSender, NotifierService, SmtpSender, notifier_queue
from scheduler.admin_client import AdminClient
from scheduler.service import SchedulerService, run_scheduler
from vectorpanda.control_db import control_engine, shared_store
from vectorpanda.process_setup import MissingSecretError
from vectorpanda.settings import Settings

if TYPE_CHECKING:  # the coordinator's registry; a notifier process does not load it
    from coordinator.metrics import Metrics

log = logging.getLogger("vectorpanda.server.duties")


def admin_url(settings: Settings, port: int | None = None) -> str:
    if settings.admin_url:
        return settings.admin_url.rstrip("/")
    # A wildcard listen address is not an address to dial; the scheduler calls loopback.
    wildcard = settings.host in ("0.0.0.0", "::")  # nosec B104 - compared, never bound
    host = "127.0.0.1" if wildcard else settings.host
    return f"http://{host}:{port or settings.port}"


def build_scheduler_service(settings: Settings, url: str) -> SchedulerService:
    if settings.scheduler_token is None or not settings.scheduler_token.get_secret_value():
        raise MissingSecretError(
            "VP_SCHEDULER_TOKEN is not set: put it in the env file "
            f"({settings.data_dir}/vectorpanda.env, mode 0600) or the environment"
        )
    admin = AdminClient(url, settings.scheduler_token.get_secret_value())
    return SchedulerService(
        admin,
        census_cron=settings.census_cron,
        backup_cron=settings.backup_cron,
        idle_days=settings.free_idle_days,
        grace_days=settings.payment_grace_days,
    )


def mail_sender(settings: Settings) -> MailSender:
    if not settings.smtp_host:
        log.info("no VP_SMTP_HOST: emails are written as .eml files under %s", settings.mail_dir)
        return EmlFileSender(settings.mail_dir)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_starttls,
        settings.smtp_username,
        password,
    )


@dataclass(frozen=True)
class EmailCounters:
    """Where the notifier counts its emails: its own metrics port, or the coordinator's."""

    sent: Callable[[], None]
    failed: Callable[[], None]
    quarantined: Callable[[], None]


def build_notifier(
    settings: Settings, with_bus: bool, counters: EmailCounters | None = None
) -> NotifierService:
    from vectorpanda.server.events import build_bus, dead_letter_hook

    bus = build_bus(settings, dead_letter_hook(settings)) if with_bus else None
    store = SqliteEventStore(control_engine(settings))
    return NotifierService(
        NotifierOutbox(shared_store(settings, settings.notifier_db), settings.ops_email),
        store,
        mail_sender(settings),
        mail_from=settings.mail_from,
        bus=bus,
        queue=notifier_queue(settings.amqp_exchange),
        on_sent=counters.sent if counters else None,
        on_failed=counters.failed if counters else None,
        on_quarantined=counters.quarantined if counters else None,
        max_attempts=settings.notifier_max_attempts,
    )


async def run_scheduler_process(settings: Settings, stop: asyncio.Event) -> None:
    service = build_scheduler_service(settings, admin_url(settings))
    await run_scheduler(service, shared_store(settings, settings.scheduler_db), stop)


async def run_notifier_process(settings: Settings, stop: asyncio.Event) -> None:
    """``vectorpanda notifier``: its own bus consumer and metrics port."""
    notifier = build_notifier(settings, with_bus=True, counters=serve_notifier_metrics(settings))
    await notifier.serve(stop)


def serve_notifier_metrics(settings: Settings) -> EmailCounters | None:
    """A separate notifier serves its email counters at ``VP_NOTIFIER_METRICS_PORT``.

    Inside ``up`` the counters live in the coordinator's /metrics instead.
    """
    if settings.notifier_metrics_port is None:
        return None
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    sent = Counter("vectorpanda_emails_sent", "Emails the notifier delivered.", registry=registry)
    failed = Counter("vectorpanda_emails_failed", "Email attempts that failed.", registry=registry)
    quarantined = Counter(
        "vectorpanda_emails_quarantined", "Emails given up on (see retry-dead).", registry=registry
    )
    start_http_server(
        settings.notifier_metrics_port, addr=settings.notifier_metrics_host, registry=registry
    )
    log.info(
        "notifier metrics on http://%s:%d/metrics",
        settings.notifier_metrics_host,
        settings.notifier_metrics_port,
    )
    return EmailCounters(sent.inc, failed.inc, quarantined.inc)


def in_process_duties(
    settings: Settings, port: int, stop: asyncio.Event, metrics: Metrics | None = None
) -> list[asyncio.Task[None]]:
    """``vectorpanda up``: the scheduler (over loopback HTTP) and the notifier.

    With ``VP_AMQP_URL`` the coordinator declares the notifier's durable queue, so the
    notifier here consumes it (a queue nobody reads would grow for ever); without a
    broker it polls the event log.
    """
    scheduler = build_scheduler_service(settings, admin_url(settings, port))
    counters = None
    if metrics is not None:
        counters = EmailCounters(
            metrics.emails_sent.inc, metrics.emails_failed.inc, metrics.emails_quarantined.inc
        )
    notifier = build_notifier(settings, with_bus=True, counters=counters)
    return [
        asyncio.create_task(
            run_scheduler(scheduler, shared_store(settings, settings.scheduler_db), stop),
            name="scheduler",
        ),
        asyncio.create_task(notifier.serve(stop), name="notifier"),
    ]
