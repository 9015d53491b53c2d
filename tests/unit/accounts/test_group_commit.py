"""Group commit: writes that arrive together share one transaction, each acknowledged after it.

A failing write in a group rolls back alone (its savepoint); the others commit. A failing
COMMIT acknowledges none of its batch, and later batches are answered after it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from coordinator.accounts.group_commit import GroupCommitter
from coordinator.accounts.model import StoreUnavailable
from coordinator.accounts.uow import AccountsTransaction, SqliteUnitOfWork
from eventlog.events import ClientCreated
from eventlog.records import StoredEvent
from eventlog.sqlite import open_engine

pytestmark = pytest.mark.integration


class Refused(Exception):
    pass


def seqs_on_disk(db: Path) -> list[int]:
    # A separate connection: only committed rows are visible to it.
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT seq FROM events ORDER BY seq")]


async def test_concurrent_writes_share_commits_and_a_failure_rolls_back_alone(
    tmp_path: Path,
) -> None:
    db = tmp_path / "control.sqlite3"
    engine = open_engine(db)
    uow = SqliteUnitOfWork(engine)
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine, "commit", count)
    seen_by_listener: list[int] = []
    uow.subscribe(lambda appended: seen_by_listener.extend(e.seq for e in appended))

    async def create(n: int) -> StoredEvent:
        def body(tx: AccountsTransaction) -> StoredEvent:
            cid = f"c{n:04d}"
            [stored] = tx.append(
                [ClientCreated(client_id=cid, name=f"n{n}", email=f"{n}@x.io", tier="free")],
                "admin",
            )
            if n == 13:
                raise Refused("after its append: nothing of it may remain")
            return stored

        stored = await uow.write(body)
        # Acknowledged only after its own commit: another connection already sees it,
        # and the commit listeners have been told.
        assert stored.seq in seqs_on_disk(db)
        assert stored.seq in seen_by_listener
        return stored

    results = await asyncio.gather(*(create(n) for n in range(64)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, Refused)]
    stored = [r for r in results if isinstance(r, StoredEvent)]
    assert len(refused) == 1 and len(stored) == 63
    assert sorted(s.seq for s in stored) == list(range(1, 64)) == seqs_on_disk(db)
    assert commits < 64 // 2, commits  # grouped: far fewer commits than writes
    report = await uow.read(lambda tx: tx.events.verify_chain())
    assert report.ok and report.events == 63
    uow.close()


async def test_a_lone_write_still_commits_at_once(tmp_path: Path) -> None:
    uow = SqliteUnitOfWork(open_engine(tmp_path / "control.sqlite3"))

    def body(tx: AccountsTransaction) -> int:
        made = ClientCreated(client_id="solo", name="s", email="s@x.io", tier="free")
        return tx.append([made], "admin")[0].seq

    assert await uow.write(body) == 1
    assert seqs_on_disk(tmp_path / "control.sqlite3") == [1]
    with pytest.raises(Refused):
        await uow.write(lambda tx: (_ for _ in ()).throw(Refused("x")))
    assert await uow.write(body) == 2
    uow.close()


class DiskFailed(Exception):
    pass


async def test_a_failed_commit_is_not_acknowledged_and_later_batches_wait_for_its_answer() -> None:
    """The writer thread starts the next batch as soon as a COMMIT returns; answers still go
    out in commit order, and a batch whose commit failed acknowledges none of its writes."""
    first_running, release_first = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run_batch(bodies: Sequence[Any]) -> list[Any]:
        numbers = [body(None) for body in bodies]
        batches.append(numbers)
        if len(batches) == 1:
            first_running.set()
            release_first.wait(10)
            raise DiskFailed("fsync failed")  # the COMMIT of the first batch
        return [(True, n, []) for n in numbers]

    notified: list[int] = []
    committer = GroupCommitter(
        run_batch, lambda appended: notified.append(len(appended)), lambda exc: exc
    )
    answered: list[tuple[int, str]] = []

    async def write(n: int) -> int:
        try:
            value = await committer.write(lambda _tx: n)
        except DiskFailed:
            answered.append((n, "failed"))
            raise
        answered.append((n, "committed"))
        return int(value)

    first = asyncio.ensure_future(write(0))
    await asyncio.to_thread(first_running.wait, 10)
    later = [asyncio.ensure_future(write(n)) for n in range(1, 6)]
    await asyncio.sleep(0)  # queued behind the first batch's commit
    release_first.set()
    with pytest.raises(DiskFailed):
        await first
    assert await asyncio.gather(*later) == [1, 2, 3, 4, 5]
    assert batches == [[0], [1, 2, 3, 4, 5]]  # the later ones formed one batch meanwhile
    assert answered == [(0, "failed")] + [(n, "committed") for n in range(1, 6)]
    assert notified == [0] * 5  # listeners hear of committed batches only
    committer.close()


async def test_a_failing_commit_on_sqlite_leaves_no_trace_and_the_next_one_commits(
    tmp_path: Path,
) -> None:
    db = tmp_path / "control.sqlite3"
    engine = open_engine(db)
    uow = SqliteUnitOfWork(engine)
    failing = True

    def refuse_commit(_conn: Any) -> None:
        if failing:
            raise sqlite3.OperationalError("disk I/O error")

    event.listen(engine, "commit", refuse_commit)

    def create(n: int) -> Callable[[AccountsTransaction], int]:
        def body(tx: AccountsTransaction) -> int:
            made = ClientCreated(client_id=f"c{n}", name=f"n{n}", email=f"{n}@x.io", tier="free")
            return tx.append([made], "admin")[0].seq

        return body

    results = await asyncio.gather(
        *(uow.write(create(n)) for n in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    assert seqs_on_disk(db) == []
    failing = False
    assert await uow.write(create(9)) == 1  # the chain goes on from what is on disk
    assert seqs_on_disk(db) == [1]
    uow.close()
