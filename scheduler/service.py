"""``vectorpanda scheduler``: APScheduler with a persistent job store, driving the admin API.

Jobs are stored in SQLite (SQLAlchemyJobStore) by reference to the module-level
functions below, so they survive restarts; the running ``SchedulerService`` is
what those functions act on. On start the census job runs once at once, which
takes every census missed while the scheduler was down (each date once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from eventlog.stopping import wait_or_stop
from scheduler.admin_client import AdminClient
from scheduler.jobs import (
    AnomalyJob,
    AutoPauseJob,
    BackupJob,
    CensusJob,
    RestoreDrillJob,
    client_facts,
)

log = logging.getLogger("vectorpanda.scheduler")

Clock = Callable[[], datetime]
_current: SchedulerService | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


class SchedulerService:
    """Census, auto-pause, anomalies, backups and the drill; each takes ``now`` from ``clock``."""

    def __init__(
        self,
        admin: AdminClient,
        *,
        census_cron: str = "5 0 * * *",
        backup_cron: str = "30 1 * * *",
        idle_days: int = 14,
        grace_days: int = 7,
        clock: Clock = utc_now,
    ) -> None:
        self.admin = admin
        self.clock = clock
        self.census_cron = census_cron
        self.backup_cron = backup_cron
        minute, hour = census_cron.split()[:2]
        due = (int(hour), int(minute)) if hour.isdigit() and minute.isdigit() else (0, 5)
        self.census = CensusJob(admin, *due)
        self.auto_pause = AutoPauseJob(admin, idle_days, grace_days)
        self.anomalies = AnomalyJob(admin)
        self.backups = BackupJob(admin)
        self.drill = RestoreDrillJob(admin)

    async def census_tick(self) -> None:
        await self.census.run(self.clock())

    async def hourly_tick(self) -> None:
        now = self.clock()
        facts = await client_facts(self.admin, now, self.auto_pause.idle_days)
        paused = set(await self.auto_pause.decide_and_pause(facts, now))
        await self.anomalies.run(now, [c for c in facts if c.client_id not in paused])

    async def backup_tick(self) -> None:
        await self.backups.run(self.clock())

    async def drill_tick(self) -> None:
        await self.drill.run(self.clock())


async def run_backups() -> None:
    """Job function (stored by reference in the job store)."""
    if _current is not None:
        await _current.backup_tick()


async def run_drill() -> None:
    """Job function (stored by reference in the job store)."""
    if _current is not None:
        await _current.drill_tick()


async def run_census() -> None:
    """Job function (stored by reference in the job store)."""
    if _current is not None:
        await _current.census_tick()


async def run_hourly() -> None:
    """Job function (stored by reference in the job store)."""
    if _current is not None:
        await _current.hourly_tick()


def build_scheduler(service: SchedulerService, job_db: Path) -> AsyncIOScheduler:
    """An AsyncIOScheduler whose jobs persist in ``job_db`` (re-registered idempotently)."""
    job_db.parent.mkdir(parents=True, exist_ok=True)
    scheduler = AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{job_db}")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=UTC,
    )
    scheduler.add_job(
        "scheduler.service:run_census",
        CronTrigger.from_crontab(service.census_cron, timezone=UTC),
        id="census",
        replace_existing=True,
    )
    scheduler.add_job(
        "scheduler.service:run_hourly",
        CronTrigger(minute=17, timezone=UTC),
        id="auto_pause_and_anomalies",
        replace_existing=True,
    )
    scheduler.add_job(
        "scheduler.service:run_backups",
        CronTrigger.from_crontab(service.backup_cron, timezone=UTC),
        id="backups",
        replace_existing=True,
    )
    scheduler.add_job(
        "scheduler.service:run_drill",
        CronTrigger(day_of_week="sun", hour=3, minute=30, timezone=UTC),
        id="restore_drill",
        replace_existing=True,
    )
    return scheduler


async def run_scheduler(service: SchedulerService, job_db: Path, stop: asyncio.Event) -> None:
    """Run until ``stop``: catch up missed censuses now, then follow the cron triggers."""
    global _current
    _current = service
    scheduler = build_scheduler(service, job_db)
    scheduler.start()
    try:
        while not stop.is_set():
            try:
                await service.census_tick()  # missed days after downtime, each once
                break
            except Exception as exc:
                log.warning("census catch-up failed (%s); retrying", exc)
                await wait_or_stop(stop, 5.0)
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        _current = None
        await service.admin.close()
