"""``vectorpanda migrate`` (schema, and the copy from SQLite) and VP_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from coordinator.accounts import Accounts, CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.uow import SqliteUnitOfWork
from eventlog.database import DatabaseUrlError, open_control_engine, postgres_url
from tests.unit.accounts.uow_contract import PEPPER
from vectorpanda.cli import main
from vectorpanda.settings import ENV_FILE_NAME, load_settings

pytestmark = pytest.mark.integration


def env_file(data_dir: Path, **values: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / ENV_FILE_NAME
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)


def test_migrate_creates_the_schema_on_postgresql_once_and_never_prints_the_password(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("VP_ENV_FILE", raising=False)
    monkeypatch.delenv("VP_DATABASE_URL", raising=False)
    # Trust auth on loopback ignores the password: it is here to be kept out of the output.
    with_password = make_url(pg_url).set(password="pw-not-to-print").render_as_string(False)
    env_file(tmp_path, VP_DATABASE_URL=with_password)
    assert load_settings(tmp_path).database_url is not None
    assert "pw-not-to-print" not in repr(load_settings(tmp_path))
    for _ in range(2):  # the second run finds everything in place
        assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "(postgresql)" in out and "0 events" in out
        assert "pw-not-to-print" not in out
    engine = create_engine(postgres_url(pg_url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"events", "outbox", "clients", "api_keys", "operators"} <= tables
    assert not (tmp_path / "control.sqlite3").exists()


def test_without_a_url_migrate_uses_the_sqlite_file_as_always(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("VP_ENV_FILE", raising=False)
    monkeypatch.delenv("VP_DATABASE_URL", raising=False)
    env_file(tmp_path, VP_ADMIN_TOKEN="x" * 32)
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    assert "(sqlite)" in capsys.readouterr().out
    assert (tmp_path / "control.sqlite3").exists()


@pytest.mark.parametrize(
    "url",
    ["mysql://u:secret@h/db", "sqlite:///x.db", "postgresql://u:secret@h/", "not a url"],
)
def test_urls_that_name_no_postgresql_database_are_refused_without_echoing_them(
    url: str,
) -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        postgres_url(url)
    assert "secret" not in str(caught.value)


def test_postgres_urls_get_the_psycopg_driver() -> None:
    assert postgres_url("postgres://u@h:5433/vp").startswith("postgresql+psycopg://u@h:5433/vp")
    assert postgres_url("postgresql://u@h/vp").startswith("postgresql+psycopg://")


async def test_an_sqlite_control_plane_copies_into_postgresql_with_the_same_chain(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.delenv("VP_ENV_FILE", raising=False)
    monkeypatch.delenv("VP_DATABASE_URL", raising=False)
    db = tmp_path / "old" / "control.sqlite3"
    db.parent.mkdir()
    old = Accounts(db, PEPPER, cache_size=10)
    client = await old.handle(CreateClient("Acme", "ops@acme.io"))
    kept = await old.handle(IssueApiKey(client.client_id, ("read",), "kept"))
    gone = await old.handle(IssueApiKey(client.client_id, ("read",), "gone"))
    await old.handle(RevokeApiKey(client.client_id, gone.key_id))
    before = await old.verify_chain()
    await old.close()

    env_file(tmp_path / "new", VP_DATABASE_URL=pg_url)
    args = ["migrate", "--data-dir", str(tmp_path / "new"), "--from-sqlite", str(db)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "events: 4 rows" in out and "api_keys: 2 rows" in out and "outbox: 4 rows" in out
    assert "source chain verifies" in out and "target chain verifies" in out

    engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    new = Accounts.with_unit_of_work(SqliteUnitOfWork(engine), PEPPER, cache_size=10)
    try:
        after = await new.verify_chain()
        assert after.ok and after.events == 4 and after.head_hash == before.head_hash
        principal = await new.authenticate(kept.api_key)
        assert principal is not None and principal.client_id == client.client_id
        assert await new.authenticate(gone.api_key) is None
        await new.handle(CreateClient("Next", "n@x.io"))  # the chain goes on from the copy
        assert (await new.verify_chain()).events == 5
    finally:
        await new.close()

    assert main(args) == 1  # a second copy into a database that has a control plane
    assert "refused" in capsys.readouterr().out


def test_a_source_whose_chain_does_not_verify_is_not_copied(pg_url: str, tmp_path: Path) -> None:
    import sqlite3

    from eventlog.sqlite import open_engine
    from eventlog.store import SqliteEventStore
    from tests.unit.eventlog.event_store_contract import created
    from vectorpanda.control_copy import CopyRefused, copy_control_plane

    db = tmp_path / "control.sqlite3"
    source = open_engine(db)
    SqliteEventStore(source).append([created(1), created(2)], actor="admin")
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TRIGGER events_no_update")
    raw.execute("UPDATE events SET actor = 'mallory' WHERE seq = 2")
    raw.close()
    target = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    try:
        with pytest.raises(CopyRefused, match="seq 2"):
            copy_control_plane(source, target)
        # Nothing landed: the target has no events table rows (or no table at all).
        assert (
            "events" not in inspect(target).get_table_names() or not SqliteEventStore(target).read()
        )
    finally:
        source.dispose()
        target.dispose()
