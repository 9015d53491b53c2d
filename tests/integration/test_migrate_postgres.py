"""``vectorpanda migrate`` and VP_DATABASE_URL read from the env file."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from eventlog.database import DatabaseUrlError, postgres_url
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
