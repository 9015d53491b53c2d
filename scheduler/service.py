"""``vectorpanda scheduler``: APScheduler with a persistent job store, driving the admin API.

Jobs are stored (SQLAlchemyJobStore) by reference to the module-level
functions below, so they survive restarts; the running ``SchedulerService`` is
what those functions act on. On start the census job runs once at once, which
takes every census missed while the scheduler was down (each date once).

The store is ``scheduler.sqlite3`` by default, or the PostgreSQL control
database when ``VP_DATABASE_URL`` names one. There every coordinator runs a
scheduler but only the one holding a session advisory lock starts it, so each
job runs once across coordinators; the others ask again every
``TAKEOVER_POLL_S``. When the leader dies the server releases its lock, the
next one takes over and starts from the stored jobs: a run the dead one
missed is still due (``misfire_grace_time``), so it runs once, late, not never.
A job already stored keeps its next run time across restarts and takeovers;
only a changed trigger (a new cron setting) reschedules it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from eventlog.database import open_control_engine
from eventlog.relay_leader import AdvisoryLeadership
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
# "VPSCHED1" in ASCII: the scheduler's leadership lock (distinct from the relay's).
SCHEDULER_LOCK_KEY = 0x5650534348454431
TAKEOVER_POLL_S = 5.0
JobStoreAt = Path | Engine


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


def job_store(where: JobStoreAt) -> SQLAlchemyJobStore:
    """The SQLite file at a Path, or the (PostgreSQL) control database an engine is on."""
    if isinstance(where, Path):
        where.parent.mkdir(parents=True, exist_ok=True)
        return SQLAlchemyJobStore(url=f"sqlite:///{where}")
    return SQLAlchemyJobStore(engine=where)


def _jobs(service: SchedulerService) -> list[tuple[str, str, BaseTrigger]]:
    return [
        (
            "census",
            "scheduler.service:run_census",
            CronTrigger.from_crontab(service.census_cron, timezone=UTC),
        ),
        (
            "auto_pause_and_anomalies",
            "scheduler.service:run_hourly",
            CronTrigger(minute=17, timezone=UTC),
        ),
        (
            "backups",
            "scheduler.service:run_backups",
            CronTrigger.from_crontab(service.backup_cron, timezone=UTC),
        ),
        (
            "restore_drill",
            "scheduler.service:run_drill",
            CronTrigger(day_of_week="sun", hour=3, minute=30, timezone=UTC),
        ),
    ]


def build_scheduler(service: SchedulerService, where: JobStoreAt) -> AsyncIOScheduler:
    """A started-paused AsyncIOScheduler whose jobs persist in ``where``; ``resume()`` runs it.

    A stored job whose trigger is unchanged keeps its stored next run time (a run missed
    while no scheduler ran is still due); a new or changed one is (re)scheduled from now.
    """
    scheduler = AsyncIOScheduler(
        jobstores={"default": job_store(where)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        timezone=UTC,
    )
    scheduler.start(paused=True)
    for job_id, func, trigger in _jobs(service):
        stored = scheduler.get_job(job_id)
        if stored is not None and str(stored.trigger) == str(trigger):
            continue
        scheduler.add_job(func, trigger, id=job_id, replace_existing=True)
    return scheduler


async def _catch_up(service: SchedulerService, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await service.census_tick()  # missed days after downtime, each once
            return
        except Exception as exc:
            log.warning("census catch-up failed (%s); retrying", exc)
            await wait_or_stop(stop, 5.0)


async def run_scheduler(
    service: SchedulerService,
    where: Path | str,
    stop: asyncio.Event,
    *,
    takeover_poll_s: float = TAKEOVER_POLL_S,
) -> None:
    """Run until ``stop``: catch up missed censuses now, then follow the cron triggers.

    ``where`` is the SQLite job file, or a PostgreSQL URL: then this scheduler runs
    only while it holds the leadership lock (see the module docstring).
    """
    global _current
    _current = service
    engine = open_control_engine(where, Path("unused")) if isinstance(where, str) else None
    leadership = (
        None if engine is None else AdvisoryLeadership(engine, SCHEDULER_LOCK_KEY, "scheduler")
    )
    scheduler: AsyncIOScheduler | None = None
    try:
        while not stop.is_set():
            leads = True
            if leadership is not None:
                try:
                    leads = await asyncio.to_thread(leadership.held)
                except Exception as exc:  # the database is away: lead nothing meanwhile
                    log.warning("scheduler leadership unknown (%s); jobs paused here", exc)
                    leads = False
            if leads and scheduler is None:
                scheduler = build_scheduler(service, engine if engine is not None else Path(where))
                scheduler.resume()
                await _catch_up(service, stop)
            elif not leads and scheduler is not None:
                log.warning("another coordinator runs the scheduler now; stopped here")
                scheduler.shutdown(wait=False)
                scheduler = None
            if leadership is None:
                await stop.wait()
                break
            await wait_or_stop(stop, takeover_poll_s)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if leadership is not None:
            leadership.release()
        if engine is not None:
            engine.dispose()
        _current = None
        await service.admin.close()
