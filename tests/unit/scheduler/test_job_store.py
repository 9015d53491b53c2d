"""The scheduler's jobs live in a persistent APScheduler job store: SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import Engine

from eventlog.database import open_control_engine
from eventlog.schema import ensure_schema
from scheduler.admin_client import AdminClient
from scheduler.service import JobStoreAt, SchedulerService, build_scheduler, job_store

EVERY = ["auto_pause_and_anomalies", "backups", "census", "restore_drill"]


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStoreAt]:
    if request.param == "sqlite":
        yield tmp_path / "scheduler.sqlite3"
        return
    engine = open_control_engine(request.getfixturevalue("pg_url"), tmp_path / "unused")
    ensure_schema(engine)  # apscheduler_jobs is a migration's table on PostgreSQL
    yield engine
    engine.dispose()


def start_and_stop(where: JobStoreAt, backup_cron: str = "30 1 * * *") -> dict[str, float]:
    """Register the jobs as a coordinator's start-up does; each job's next run (epoch s)."""

    async def run() -> dict[str, float]:
        service = SchedulerService(AdminClient("http://x", "t"), backup_cron=backup_cron)
        scheduler = build_scheduler(service, where)
        runs = {job.id: job.next_run_time.timestamp() for job in scheduler.get_jobs()}
        scheduler.shutdown(wait=False)
        await service.admin.close()
        return runs

    return asyncio.run(run())


def stored(where: JobStoreAt) -> SQLAlchemyJobStore:
    store = job_store(where)
    store.start(None, "default")  # type: ignore[arg-type]
    return store


def test_jobs_persist_across_restarts(where: JobStoreAt) -> None:
    assert sorted(start_and_stop(where)) == EVERY
    jobs = {job.id: job for job in stored(where).get_all_jobs()}
    assert sorted(jobs) == EVERY
    assert (
        str(jobs["census"].trigger)
        == "cron[month='*', day='*', day_of_week='*', hour='0', minute='5']"
    )
    assert (
        str(jobs["backups"].trigger)
        == "cron[month='*', day='*', day_of_week='*', hour='1', minute='30']"
    )
    assert sorted(start_and_stop(where)) == EVERY


def test_a_run_missed_while_no_scheduler_ran_is_still_due_after_a_restart(
    where: JobStoreAt,
) -> None:
    start_and_stop(where)
    store = stored(where)
    job = store.lookup_job("backups")
    assert job is not None
    missed = datetime.fromtimestamp(time.time() - 600, UTC)  # due while nobody was leading
    state = job.__getstate__()
    state["next_run_time"] = missed
    job.__setstate__(state)
    store.update_job(job)
    assert start_and_stop(where)["backups"] == pytest.approx(missed.timestamp())
    # A changed setting reschedules from now instead.
    moved = start_and_stop(where, backup_cron="45 2 * * *")["backups"]
    assert moved > time.time()


def test_the_postgresql_job_store_is_the_shared_one(pg_url: str, tmp_path: Path) -> None:
    a: Engine = open_control_engine(pg_url, tmp_path / "unused")
    b: Engine = open_control_engine(pg_url, tmp_path / "unused")
    try:
        ensure_schema(a)
        start_and_stop(a)
        assert sorted(j.id for j in stored(b).get_all_jobs()) == EVERY
    finally:
        a.dispose()
        b.dispose()
