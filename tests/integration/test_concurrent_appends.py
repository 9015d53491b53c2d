"""Several processes append at once: seq stays gap-free and the hash chain unbroken.

Real processes (spawned, each with its own engine and pool) against the real
SQLite file and the real PostgreSQL server, as several coordinators would be.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from eventlog.database import open_control_engine
from eventlog.hashchain import GENESIS_HASH
from eventlog.records import MAX_READ_LIMIT
from eventlog.store import SqliteEventStore
from tests.unit.eventlog.event_store_contract import created

pytestmark = pytest.mark.integration

PROCESSES = 3
EACH = 1000


def append_many(url: str | None, path: str, base: int, count: int, start: Any) -> None:
    """One writer process: ``count`` single-event appends, as fast as it can."""
    store = SqliteEventStore(open_control_engine(url, Path(path)))
    start.wait()
    for n in range(count):
        store.append([created(base + n)], actor=f"writer-{base}")
        if n % 25 == 24:
            # SQLite's busy handler lets a waiting writer sleep up to 100 ms while the
            # holder takes the lock again at once: a pause now and then lets the others
            # in, so the writers really interleave (asserted below) on a loaded machine.
            time.sleep(0.02)
    store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str | None, Path]:
    if request.param == "sqlite":
        return None, tmp_path / "control.sqlite3"
    return request.getfixturevalue("pg_url"), tmp_path / "unused.sqlite3"


def test_concurrent_processes_keep_one_gap_free_chain(location: tuple[str | None, Path]) -> None:
    url, path = location
    store = SqliteEventStore(open_control_engine(url, path))  # the schema, before the race
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=append_many, args=(url, str(path), i * 1_000_000, EACH, start))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=150)
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    events = []
    while len(page := store.read(after_seq=len(events), limit=MAX_READ_LIMIT)):
        events += page
    total = PROCESSES * EACH
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert len({e.client_id for e in events}) == total
    assert events[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    # The writers really interleaved: no process's events form one block.
    actors = [e.actor for e in events]
    switches = sum(1 for a, b in itertools.pairwise(actors) if a != b)
    assert switches > PROCESSES - 1  # sequential blocks would switch PROCESSES - 1 times
    report = store.verify_chain()
    assert report.ok, report.mismatches[:3]
    assert report.events == total and report.head_hash == events[-1].hash
    assert len(store.pending_outbox(limit=MAX_READ_LIMIT)) == MAX_READ_LIMIT
    store.engine.dispose()


def admin_actions(
    url: str | None, base: int, count: int, start: Any, path: str = "/nonexistent/control.sqlite3"
) -> None:
    """One coordinator process: ``count`` CreateClient commands through the unit of work."""
    import asyncio

    from coordinator.accounts import Accounts, CreateClient
    from coordinator.accounts.uow import SqliteUnitOfWork
    from tests.unit.accounts.uow_contract import PEPPER

    async def run() -> None:
        engine = open_control_engine(url, Path(path))
        accounts = Accounts.with_unit_of_work(SqliteUnitOfWork(engine), PEPPER, cache_size=10)
        start.wait()
        # Ten at a time, as concurrent requests on one coordinator (group commit batches them).
        for first in range(0, count, 10):
            await asyncio.gather(
                *(
                    accounts.handle(CreateClient(f"C{base + n}", f"c{base + n}@x.io"))
                    for n in range(first, min(first + 10, count))
                )
            )
        await accounts.close()

    asyncio.run(run())


def test_admin_actions_from_three_coordinator_processes_on_sqlite(tmp_path: Path) -> None:
    """The accounts unit of work, as three `vectorpanda up` coordinator processes run it."""
    admin_actions_from_three_processes(None, tmp_path / "control.sqlite3")


def test_admin_actions_from_three_coordinator_processes_on_postgresql(pg_url: str) -> None:
    admin_actions_from_three_processes(pg_url, Path("/nonexistent/control.sqlite3"))


def admin_actions_from_three_processes(pg_url: str | None, path: Path) -> None:
    from coordinator.accounts.uow import SqliteUnitOfWork

    store = SqliteEventStore(open_control_engine(pg_url, path))
    SqliteUnitOfWork(store.engine)  # the accounts schema, before the race
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=admin_actions, args=(pg_url, i * 1_000_000, EACH, start, str(path)))
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=150)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    total = PROCESSES * EACH
    events = []
    while len(page := store.read(after_seq=len(events), limit=MAX_READ_LIMIT)):
        events += page
    assert [e.seq for e in events] == list(range(1, total + 1))
    assert {e.type for e in events} == {"client.created"}
    assert len({e.client_id for e in events}) == total
    report = store.verify_chain()
    assert report.ok and report.events == total
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM clients").scalar() == total
    store.engine.dispose()
