"""Group commit: writes that arrive together share one transaction, each acknowledged after it.

A failing write in a group rolls back alone (its savepoint); the others commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

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
