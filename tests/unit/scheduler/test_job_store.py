"""The scheduler's jobs live in a persistent (SQLite) APScheduler job store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

from scheduler.admin_client import AdminClient
from scheduler.service import SchedulerService, build_scheduler


def test_jobs_persist_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "scheduler.sqlite3"

    async def start_and_stop() -> list[str]:
        service = SchedulerService(AdminClient("http://x", "t"), census_cron="5 0 * * *")
        scheduler = build_scheduler(service, db)
        scheduler.start()
        ids = sorted(job.id for job in scheduler.get_jobs())
        scheduler.shutdown(wait=False)
        await service.admin.close()
        return ids

    every = ["auto_pause_and_anomalies", "backups", "census", "restore_drill"]
    assert asyncio.run(start_and_stop()) == every
    store = SQLAlchemyJobStore(url=f"sqlite:///{db}")
    store.start(None, "default")  # type: ignore[arg-type]
    jobs = {job.id: job for job in store.get_all_jobs()}
    assert set(jobs) == set(every)
    assert (
        str(jobs["census"].trigger)
        == "cron[month='*', day='*', day_of_week='*', hour='0', minute='5']"
    )
    assert (
        str(jobs["backups"].trigger)
        == "cron[month='*', day='*', day_of_week='*', hour='1', minute='30']"
    )
    assert asyncio.run(start_and_stop()) == every
