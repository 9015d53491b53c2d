"""A worker reads its settings without pydantic (vectorpanda.worker_settings): the same
variables, env file, defaults and bounds as Settings, and the same error for a bad value."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le
from pydantic import SecretStr, ValidationError

from vectorpanda import process_setup
from vectorpanda.cli import main
from vectorpanda.env_file import InsecureEnvFileError
from vectorpanda.settings import Settings, load_settings
from vectorpanda.worker_settings import WORKER_FIELDS, WorkerSettings, load_worker_settings

KINDS = {"int": int, "float": float, "str": str, "path": Path, "secret": SecretStr}


@pytest.fixture(autouse=True)
def no_vp_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("VP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VP_DATA_DIR", str(tmp_path))
    yield


def from_settings(data_dir: Path | None = None) -> dict[str, Any]:
    settings = load_settings(data_dir)
    values = {name: getattr(settings, name) for name in WORKER_FIELDS}
    secret = settings.worker_secret
    values["worker_secret"] = None if secret is None else secret.get_secret_value()
    return values


def as_dict(settings: WorkerSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in WORKER_FIELDS}


@pytest.mark.parametrize("name", sorted(WORKER_FIELDS))
def test_each_worker_field_has_the_default_type_and_bounds_of_settings(name: str) -> None:
    spec, field = WORKER_FIELDS[name], Settings.model_fields[name]
    assert spec.default == field.default
    assert KINDS[spec.kind] in (field.annotation, *getattr(field.annotation, "__args__", ()))
    bounds = {
        type(m).__name__.lower(): getattr(m, type(m).__name__.lower())
        for m in field.metadata
        if isinstance(m, Ge | Gt | Le)
    }
    mine = {k: v for k, v in (("ge", spec.ge), ("gt", spec.gt), ("le", spec.le)) if v is not None}
    assert mine == bounds


def test_defaults_match_settings() -> None:
    assert as_dict(load_worker_settings()) == from_settings()


def test_environment_and_env_file_values_match_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / "vectorpanda.env"
    env_file.write_text(
        "VP_WORKER_SECRET='from-file'\nVP_WORKER_QUERY_BATCH=8\nVP_WORKER_THREADS=3\n"
        "VP_COLD_DIR=/srv/cold\n# VP_WORKER_ID=commented\n",
        encoding="utf-8",
    )
    env_file.chmod(0o600)
    monkeypatch.setenv("VP_WORKER_THREADS", "12")  # the environment wins over the file
    monkeypatch.setenv("VP_WORKER_SWITCH_INTERVAL_MS", "0.5")
    monkeypatch.setenv("VP_HEARTBEAT_INTERVAL_S", "2")
    monkeypatch.setenv("VP_MIN_FREE_BYTES", "0")
    monkeypatch.setenv("VP_WORKER_LIVENESS_FILE", str(tmp_path / "alive"))
    monkeypatch.setenv("VP_COORDINATOR_URL", "ws://a:1,ws://b:2")
    mine = load_worker_settings()
    assert as_dict(mine) == from_settings()
    assert (mine.worker_secret, mine.worker_query_batch, mine.worker_threads) == (
        "from-file",
        8,
        12,
    )
    assert mine.cold == Path("/srv/cold") and mine.hot == tmp_path / "hot"
    other = tmp_path / "other"
    assert as_dict(load_worker_settings(other)) == from_settings(other)  # --data-dir


BAD_VALUES = [
    ("VP_WORKER_QUERY_BATCH", "5000"),
    ("VP_WORKER_QUERY_BATCH", "0"),
    ("VP_WORKER_TENANT_QUEUE", "-1"),
    ("VP_WORKER_THREADS", "many"),
    ("VP_WORKER_MEMORY_MB", "15"),
    ("VP_WORKER_SWITCH_INTERVAL_MS", "0.01"),
    ("VP_HEARTBEAT_INTERVAL_S", "0"),
    ("VP_WAL_COMPACT_BYTES", "1.5"),
    ("VP_MIN_FREE_BYTES", "-5"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_refused_with_the_settings_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as expected:
        load_settings()
    with pytest.raises(ValidationError) as mine:
        load_worker_settings()
    assert str(mine.value) == str(expected.value)
    assert name[3:].lower() in str(mine.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("vp_worker_query_batch", "7"), ("VP_WORKER_TENANT_QUEUE", "0100"), ("VP_WORKER_ID", "")],
)
def test_values_it_is_unsure_of_are_read_by_settings(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert as_dict(load_worker_settings()) == from_settings()


def test_an_env_file_open_to_others_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "vectorpanda.env"
    env_file.write_text("VP_WORKER_SECRET=x\n", encoding="utf-8")
    env_file.chmod(0o644)
    with pytest.raises(InsecureEnvFileError, match="chmod 600"):
        load_worker_settings()


def test_the_worker_command_refuses_a_bad_value_and_a_missing_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # logging of this test process stays as it is
    monkeypatch.setattr(process_setup.configure_logging, "done", True, raising=False)
    assert main(["worker"]) == 2
    assert capsys.readouterr().err == (
        f"vectorpanda: VP_WORKER_SECRET is not set: put it in the env file "
        f"({tmp_path}/vectorpanda.env, mode 0600) or the environment\n"
    )
    monkeypatch.setenv("VP_WORKER_SECRET", "s")
    monkeypatch.setenv("VP_WORKER_TENANT_THREADS", "2000")
    with pytest.raises(ValidationError, match="less than or equal to 1024"):
        main(["worker"])
