"""The accounts unit of work on PostgreSQL: the shared contract plus cross-process writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from coordinator.accounts import Accounts, CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.handlers import handle
from coordinator.accounts.model import StoreUnavailable
from coordinator.accounts.uow import AccountsUnitOfWork, SqliteUnitOfWork
from eventlog.database import open_control_engine
from tests.stack import TcpProxy
from tests.unit.accounts.uow_contract import PEPPER, MakeUow, UnitOfWorkContract

pytestmark = pytest.mark.integration


@pytest.fixture
def opened() -> Iterator[list[AccountsUnitOfWork]]:
    made: list[AccountsUnitOfWork] = []
    yield made
    for uow in made:
        uow.close()


@pytest.fixture
def make_pg_uow(pg_url: str, tmp_path: Path, opened: list[AccountsUnitOfWork]) -> MakeUow:
    def make() -> AccountsUnitOfWork:
        uow = SqliteUnitOfWork(open_control_engine(pg_url, tmp_path / "unused.sqlite3"))
        opened.append(uow)
        return uow

    return make


class TestPostgresUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def make_uow(self, make_pg_uow: MakeUow) -> MakeUow:
        return make_pg_uow


async def test_two_coordinators_serialise_into_one_chain(make_pg_uow: MakeUow) -> None:
    uows = [make_pg_uow(), make_pg_uow()]  # two engines: two connection pools, like two hosts
    cmds = [handle(CreateClient(f"C{n}", f"c{n}@x.io"), uows[n % 2], PEPPER) for n in range(40)]
    views = await asyncio.gather(*cmds)
    assert len({v.client_id for v in views}) == 40
    report = await uows[0].read(lambda tx: tx.events.verify_chain())
    assert report.ok and report.events == 40
    seqs = [e.seq for e in await uows[1].read(lambda tx: tx.events.read(limit=1000))]
    assert seqs == list(range(1, 41))


async def test_a_key_revoked_on_one_coordinator_is_refused_by_a_fresh_lookup_on_another(
    make_pg_uow: MakeUow,
) -> None:
    a = Accounts.with_unit_of_work(make_pg_uow(), PEPPER, cache_size=10)
    b = Accounts.with_unit_of_work(make_pg_uow(), PEPPER, cache_size=10)
    client = await a.handle(CreateClient("Acme", "ops@acme.io"))
    issued = await a.handle(IssueApiKey(client.client_id, ("read",)))
    principal = await b.authenticate(issued.api_key)
    assert principal is not None and principal.client_id == client.client_id
    await a.handle(RevokeApiKey(client.client_id, issued.key_id))
    b.key_cache.apply(await a.list_events(limit=1000))  # what the eviction queue delivers
    assert await b.authenticate(issued.api_key) is None
    assert (await b.verify_chain()).events == 3


async def test_writable_probe_writes_nothing(make_pg_uow: MakeUow) -> None:
    uow = make_pg_uow()
    assert await uow.writable() is True
    assert (await uow.read(lambda tx: tx.events.verify_chain())).events == 0


async def test_a_server_cut_mid_traffic_is_store_unavailable_then_recovers(
    pg_url: str, tmp_path: Path
) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    via = make_url(pg_url).set(host="127.0.0.1", port=proxy.port).render_as_string(False)
    uow = SqliteUnitOfWork(open_control_engine(via, tmp_path / "unused.sqlite3"))
    try:
        await handle(CreateClient("Before", "b@x.io"), uow, PEPPER)
        proxy.cut()
        with pytest.raises(StoreUnavailable):
            await handle(CreateClient("During", "d@x.io"), uow, PEPPER)
        assert await uow.writable() is False
        proxy.restore()
        await handle(CreateClient("After", "a@x.io"), uow, PEPPER)
        report = await uow.read(lambda tx: tx.events.verify_chain())
        assert report.ok and report.events == 2  # the refused action left no trace
    finally:
        uow.close()
        proxy.close()
