"""``vectorpanda admin rotate-master-key``: new master key, same data keys, resumable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.accounts import Accounts, CreateClient
from coordinator.data_keys import DataKeys
from coordinator.key_wrapping import KeyUnavailable, LocalKeyWrapper
from vectorpanda.master_key_cli import OLD, _rewrite_env
from vectorpanda.settings import ensure_env_file, read_env_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _data_keys(data_dir: Path, masters: list[str]) -> dict[str, bytes]:
    accounts = Accounts(data_dir / "control.sqlite3", b"p" * 32)
    keys = DataKeys(accounts.uow, LocalKeyWrapper(masters))
    try:
        clients = asyncio.run(accounts.list_clients())
        found = {}
        for client in clients:
            wire = asyncio.run(keys.keyring_for(client.client_id))
            assert wire is not None
            found[client.client_id] = bytes.fromhex(wire["keys"]["1"])
        return found
    finally:
        asyncio.run(accounts.close())


def _rotate(data_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vectorpanda", "admin", "rotate-master-key"]
    return subprocess.run(
        [*command, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )


def test_rotation_rewraps_every_key_and_finishes_after_an_interruption(tmp_path: Path) -> None:
    env = tmp_path / "vectorpanda.env"
    ensure_env_file(env)
    first = read_env_file(env)["VP_MASTER_KEY"]
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    keys = DataKeys(accounts.uow, LocalKeyWrapper([first]))
    for name in ("a", "b"):
        view = asyncio.run(accounts.handle(CreateClient(name=name, email=f"{name}@x.io")))
        asyncio.run(keys.ensure(view.client_id))
    asyncio.run(accounts.close())
    before = _data_keys(tmp_path, [first])

    done = _rotate(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 data keys re-wrapped" in done.stdout
    assert first not in done.stdout + done.stderr  # no secret on the terminal
    second = read_env_file(env)["VP_MASTER_KEY"]
    assert second != first and OLD not in read_env_file(env)
    assert oct(env.stat().st_mode & 0o777) == "0o600"
    assert _data_keys(tmp_path, [second]) == before  # same data keys: no file rewritten
    with pytest.raises(KeyUnavailable):
        _data_keys(tmp_path, [first])

    # Interrupted after step 1 (new key and old one both in the file): the run finishes it.
    third = "x" * 43
    _rewrite_env(env, {"VP_MASTER_KEY": third, OLD: second})
    assert _data_keys(tmp_path, [third, second]) == before  # a coordinator started now works
    again = _rotate(tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_env_file(env)["VP_MASTER_KEY"] == third  # no second new key
    assert _data_keys(tmp_path, [third]) == before
