"""The unit-of-work contract against SQLite, plus what only the real file can show."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.accounts import Accounts, CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.handlers import handle
from coordinator.accounts.uow import AccountsUnitOfWork, SqliteUnitOfWork
from eventlog.sqlite import open_engine
from tests.unit.accounts.uow_contract import PEPPER, MakeUow, UnitOfWorkContract

pytestmark = pytest.mark.integration


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[AccountsUnitOfWork]]:
    made: list[AccountsUnitOfWork] = []
    yield made
    for uow in made:
        uow.close()


class TestSqliteUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def make_uow(self, tmp_path: Path, opened: list[AccountsUnitOfWork]) -> MakeUow:
        def make() -> AccountsUnitOfWork:
            uow = SqliteUnitOfWork(open_engine(tmp_path / "control.sqlite3"))
            opened.append(uow)
            return uow

        return make


def file_bytes(db: Path) -> bytes:
    parts = [db, db.with_name(db.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


async def test_secret_never_reaches_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    accounts = Accounts(db, PEPPER, cache_size=10)
    client = await accounts.handle(CreateClient("Acme", "ops@acme.io"))
    issued = [
        await accounts.handle(IssueApiKey(client.client_id, ("read", "write"), f"k{n}"))
        for n in range(3)
    ]
    assert await accounts.authenticate(issued[0].api_key) is not None
    await accounts.handle(RevokeApiKey(client.client_id, issued[1].key_id))
    events = await accounts.list_events(limit=1000)
    while_open = file_bytes(db)
    await accounts.close()
    after_close = file_bytes(db)
    for raw in (while_open, after_close):
        assert client.client_id.encode() in raw  # we are reading the right bytes
        for key in issued:
            secret = key.api_key.split("_", 2)[2]
            assert key.key_id.encode() in raw
            assert secret.encode() not in raw and key.api_key.encode() not in raw
    for key in issued:
        secret = key.api_key.split("_", 2)[2]
        assert all(secret not in repr(e) for e in events)


async def test_state_survives_reopening(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    first = Accounts(db, PEPPER, cache_size=10)
    client = await first.handle(CreateClient("Acme", "ops@acme.io"))
    issued = await first.handle(IssueApiKey(client.client_id, ("read",)))
    await first.close()
    second = Accounts(db, PEPPER, cache_size=10)
    try:
        principal = await second.authenticate(issued.api_key)
        assert principal is not None and principal.client_id == client.client_id
        assert (await second.verify_chain()).events == 2
    finally:
        await second.close()


async def test_concurrent_commands_serialise_into_one_chain(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    uows = [SqliteUnitOfWork(open_engine(db)) for _ in range(2)]
    try:
        cmds = [handle(CreateClient(f"C{n}", f"c{n}@x.io"), uows[n % 2], PEPPER) for n in range(30)]
        views = await asyncio.gather(*cmds)
        assert len({v.client_id for v in views}) == 30
        report = await uows[0].read(lambda tx: tx.events.verify_chain())
        assert report.ok and report.events == 30
    finally:
        for uow in uows:
            uow.close()


async def test_writable_probe_writes_nothing(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "control.sqlite3", PEPPER, cache_size=10)
    try:
        assert await accounts.writable() is True
        assert (await accounts.verify_chain()).events == 0
    finally:
        await accounts.close()
