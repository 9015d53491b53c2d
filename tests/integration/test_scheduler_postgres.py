"""The scheduler on a shared PostgreSQL: each job runs once across coordinators, and a
run the leader missed by dying is run by the one that takes over (not never)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventlog.database import open_control_engine
from eventlog.schema import ensure_schema
from scheduler.service import job_store

pytestmark = pytest.mark.integration

COORDINATOR = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from scheduler.admin_client import AdminClient
    from scheduler.service import SchedulerService, run_scheduler

    url, out = sys.argv[1], Path(sys.argv[2])

    def note(what):
        with out.open("a") as f:
            f.write(f"{what} {os.getpid()}\\n")

    class Service(SchedulerService):
        async def census_tick(self):  # run once by whoever starts leading
            note("lead")
        async def backup_tick(self):
            note("backups")
        async def hourly_tick(self):
            note("hourly")
        async def drill_tick(self):
            note("drill")

    asyncio.run(run_scheduler(
        Service(AdminClient("http://127.0.0.1:9", "t")), url, asyncio.Event(),
        takeover_poll_s=0.3,
    ))
    """
)


def lines(out: Path) -> list[tuple[str, int]]:
    if not out.exists():
        return []
    return [(w, int(p)) for w, p in (line.split() for line in out.read_text().splitlines())]


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def make_backups_due(url: str, tmp_path: Path) -> None:
    """As a leader that died just before 01:30 would leave it: the run is due, not done."""
    engine = open_control_engine(url, tmp_path / "unused")
    try:
        store = job_store(engine)
        store.start(None, "default")  # type: ignore[arg-type]
        job = store.lookup_job("backups")
        assert job is not None
        state = job.__getstate__()
        state["next_run_time"] = datetime.fromtimestamp(time.time() - 60, UTC)
        job.__setstate__(state)
        store.update_job(job)
    finally:
        engine.dispose()


@pytest.fixture
def coordinators(pg_url: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def test_jobs_run_once_across_coordinators_and_survive_the_leaders_death(
    pg_url: str, tmp_path: Path, coordinators: list[subprocess.Popen[bytes]]
) -> None:
    out = tmp_path / "runs.txt"
    engine = open_control_engine(pg_url, tmp_path / "unused")
    ensure_schema(engine)
    engine.dispose()

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", COORDINATOR, pg_url, str(out)], cwd=os.getcwd()
        )
        coordinators.append(proc)
        return proc

    first = start()
    wait_for(lambda: ("lead", first.pid) in lines(out))
    # Registered by the first leader; now a run falls due with three coordinators up.
    make_backups_due(pg_url, tmp_path)
    others = [start(), start()]
    # (The first leader reads the store again only at its next wake-up, hours away; it
    # dies before that, which is the case to show: the run it left due is not lost.)
    time.sleep(1.5)  # the newcomers ask for the lock five times meanwhile
    assert [w for w, _ in lines(out)] == ["lead"]  # one leader, the newcomers wait

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    wait_for(lambda: any(w == "backups" for w, _ in lines(out)))
    time.sleep(1.5)
    runs = lines(out)
    leads = [p for w, p in runs if w == "lead"]
    backups = [p for w, p in runs if w == "backups"]
    assert len(leads) == 2 and leads[0] == first.pid and leads[1] in {p.pid for p in others}
    assert backups == [leads[1]]  # the missed run: once, by the coordinator that took over

    # And the new leader's death hands over again, with the jobs still registered.
    survivor = next(p for p in others if p.pid != leads[1])
    next(p for p in others if p.pid == leads[1]).send_signal(signal.SIGKILL)
    wait_for(lambda: ("lead", survivor.pid) in lines(out))
    assert [w for w, _ in lines(out)].count("backups") == 1
