"""The env file holding VectorPanda's secrets: where it is, its mode, its values.

Free of pydantic, so that a worker process can read its few settings from here
(vectorpanda.worker_settings) without loading the full Settings model.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

ENV_FILE_NAME = "vectorpanda.env"


class InsecureEnvFileError(RuntimeError):
    """The env file holding secrets is readable by group or others."""


def env_file_path(data_dir: Path) -> Path:
    """Where the secrets file lives, honouring ``VP_ENV_FILE``."""
    override = os.environ.get("VP_ENV_FILE")
    return Path(override) if override else data_dir / ENV_FILE_NAME


def check_env_file_mode(path: Path) -> None:
    """Refuse an env file that group or others can read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecureEnvFileError(
            f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"it holds secrets. Fix it with: chmod 600 {path}"
        )


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=value`` lines of an env file after checking its mode."""
    check_env_file_mode(path)
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def env_file_settings(data_dir: Path | None) -> dict[str, str]:
    """The env file's ``VP_*`` values that the environment does not set, by setting name
    (``VP_WORKER_ID`` -> ``worker_id``): the environment wins over the file."""
    base_dir = data_dir or Path(os.environ.get("VP_DATA_DIR", "./vp-data"))
    path = env_file_path(base_dir)
    values: dict[str, str] = {}
    if path.exists():
        for key, value in read_env_file(path).items():
            if key.startswith("VP_") and key not in os.environ:
                values[key[3:].lower()] = value
    return values
