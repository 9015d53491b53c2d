"""``vectorpanda fleet``'s control database: SQLite unless told otherwise; several
coordinators only on PostgreSQL; a password never on the command line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vectorpanda.fleet import Fleet
from vectorpanda.settings import ensure_env_file, env_file_path


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("VP_DATABASE_URL", raising=False)
    monkeypatch.delenv("VP_ENV_FILE", raising=False)
    ensure_env_file(env_file_path(tmp_path))
    return tmp_path


def test_unset_the_fleet_stays_on_sqlite_with_one_coordinator(data_dir: Path) -> None:
    fleet = Fleet(data_dir, say=io.StringIO())
    fleet._choose_database()
    assert not fleet.on_postgres
    assert "VP_DATABASE_URL" not in fleet._env()
    with pytest.raises(RuntimeError, match="several coordinators share one control database"):
        Fleet(data_dir, coordinators=2, say=io.StringIO())._choose_database()


def test_a_url_with_a_password_is_refused_on_the_command_line(data_dir: Path) -> None:
    fleet = Fleet(data_dir, database_url="postgresql://vp:s3cret@127.0.0.1/vp", coordinators=2)
    with pytest.raises(RuntimeError, match="must not carry a password") as caught:
        fleet._choose_database()
    assert "s3cret" not in str(caught.value)


def test_a_passwordless_url_goes_to_every_child_and_workers_dial_every_hub(data_dir: Path) -> None:
    fleet = Fleet(data_dir, database_url="postgresql://vp@127.0.0.1/vp", coordinators=2)
    fleet._choose_database()
    fleet.hub_ports = [9001, 9002]
    env = fleet._env()
    assert fleet.on_postgres and env["VP_DATABASE_URL"] == "postgresql://vp@127.0.0.1/vp"
    assert env["VP_COORDINATOR_URL"] == "ws://127.0.0.1:9001,ws://127.0.0.1:9002"


def test_the_env_files_url_counts_and_stays_in_the_file(data_dir: Path) -> None:
    env_file = env_file_path(data_dir)
    with env_file.open("a") as fh:
        fh.write("VP_DATABASE_URL=postgresql://vp:pw@127.0.0.1/vp\n")
    fleet = Fleet(data_dir, coordinators=2)
    fleet._choose_database()  # accepted: the children read it from the file themselves
    assert fleet.on_postgres and "VP_DATABASE_URL" not in fleet._env()
