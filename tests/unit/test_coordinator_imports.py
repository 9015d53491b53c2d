"""The coordinator holds no library it does not run (RSS: issue 11): built as ``vectorpanda
up`` builds it, on a fresh data dir, it has not loaded Alembic (the start-up migration runs
in a helper process), Jinja2 (the dashboard's pages load it), aiosmtplib (the first email
sent over SMTP loads it), pydantic's v1 copy, uvicorn's file watcher or, on SQLite,
SQLAlchemy's PostgreSQL dialect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from pathlib import Path
from vectorpanda import server
server._without_unused_library_parts()  # as `vectorpanda up` does first
import vectorpanda.server.launcher  # noqa: F401 - every module `up` imports
from vectorpanda.server.coordinator import build_coordinator
from vectorpanda.settings import ensure_env_file, env_file_path, load_settings

data_dir = Path(sys.argv[1])
ensure_env_file(env_file_path(data_dir))
parts = build_coordinator(load_settings(data_dir, projections_in_process=True))
unused = ("alembic", "mako", "jinja2", "aiosmtplib", "pydantic.v1", "watchfiles")
unused += ("sqlalchemy.dialects.postgresql",)  # on SQLite
loaded = [m for m in unused if sys.modules.get(m) is not None]
print(",".join(loaded) + "|" + str(parts.app is not None))
"""


def test_a_coordinator_built_on_a_fresh_data_dir_loads_no_unused_library(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VP_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "|True"
