"""The settings a worker process reads, without pydantic.

Settings (pydantic and pydantic-settings) costs about 11 MiB of RSS in every worker
process, which reads only the few values below. They come from the same ``VP_*``
variables and env file, with the same defaults and bounds as the fields of Settings
(tests/unit/test_worker_settings.py holds the two together). A value this reader is
not sure of (out of bounds, not a plain number, empty, a variable named in lower
case) is left to Settings itself, which accepts it or refuses it with its usual error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vectorpanda.env_file import env_file_settings


@dataclass(frozen=True)
class FieldSpec:
    """One setting: its kind (int, float, str, path, secret), default and bounds."""

    kind: str
    default: Any = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None


# Each mirrors the Settings field of the same name.
WORKER_FIELDS: dict[str, FieldSpec] = {
    "data_dir": FieldSpec("path", Path("./vp-data")),
    "hot_dir": FieldSpec("path"),
    "cold_dir": FieldSpec("path"),
    "backup_dir": FieldSpec("path"),
    "coordinator_url": FieldSpec("str", "ws://127.0.0.1:8081"),
    "worker_id": FieldSpec("str"),
    "worker_secret": FieldSpec("secret"),
    "worker_threads": FieldSpec("int", None, ge=1, le=1024),
    "worker_tenant_threads": FieldSpec("int", None, ge=1, le=1024),
    "worker_tenant_queue": FieldSpec("int", 128, ge=0, le=100_000),
    "worker_switch_interval_ms": FieldSpec("float", 1.0, ge=0.1, le=100),
    "worker_query_batch": FieldSpec("int", 32, ge=1, le=1024),
    "worker_memory_mb": FieldSpec("int", 1024, ge=16),
    "min_free_bytes": FieldSpec("int", None, ge=0),
    "worker_liveness_file": FieldSpec("path"),
    "wal_compact_bytes": FieldSpec("int", 64 * 1024 * 1024, ge=1024),
    "heartbeat_interval_s": FieldSpec("float", 1.0, gt=0),
}

_INT = re.compile(r"0|[1-9][0-9]*")
_FLOAT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")


@dataclass(frozen=True)
class WorkerSettings:
    """What ``vectorpanda worker`` needs of Settings (same names, same meaning)."""

    data_dir: Path
    hot_dir: Path | None
    cold_dir: Path | None
    backup_dir: Path | None
    coordinator_url: str
    worker_id: str | None
    worker_secret: str | None
    worker_threads: int | None
    worker_tenant_threads: int | None
    worker_tenant_queue: int
    worker_switch_interval_ms: float
    worker_query_batch: int
    worker_memory_mb: int
    min_free_bytes: int | None
    worker_liveness_file: Path | None
    wal_compact_bytes: int
    heartbeat_interval_s: float

    @property
    def hot(self) -> Path:
        return self.hot_dir or self.data_dir / "hot"

    @property
    def cold(self) -> Path:
        return self.cold_dir or self.data_dir / "cold"

    @property
    def backups(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"


class _Unsure(Exception):
    """A value for Settings to judge."""


def _parse(spec: FieldSpec, raw: str) -> Any:
    if raw == "":
        raise _Unsure
    if spec.kind in ("str", "secret"):
        return raw
    if spec.kind == "path":
        return Path(raw)
    pattern = _INT if spec.kind == "int" else _FLOAT
    if not pattern.fullmatch(raw):
        raise _Unsure
    value = int(raw) if spec.kind == "int" else float(raw)
    if spec.ge is not None and not value >= spec.ge:
        raise _Unsure
    if spec.gt is not None and not value > spec.gt:
        raise _Unsure
    if spec.le is not None and not value <= spec.le:
        raise _Unsure
    return value


def _read(data_dir: Path | None) -> WorkerSettings:
    wanted = {f"VP_{name.upper()}" for name in WORKER_FIELDS}
    # pydantic-settings matches names in any case; leave such spellings to it
    if any(k.upper() in wanted and k not in wanted for k in os.environ):
        raise _Unsure
    from_file = env_file_settings(data_dir)
    values: dict[str, Any] = {}
    for name, spec in WORKER_FIELDS.items():
        raw = os.environ.get(f"VP_{name.upper()}", from_file.get(name))
        values[name] = spec.default if raw is None else _parse(spec, raw)
    if data_dir is not None:
        values["data_dir"] = data_dir
    return WorkerSettings(**values)


def load_worker_settings(data_dir: Path | None = None) -> WorkerSettings:
    """The worker's settings as ``load_settings(data_dir)`` would give them, and the same
    error for a bad value (from Settings itself, loaded only then)."""
    try:
        return _read(data_dir)
    except _Unsure:
        pass
    from vectorpanda.settings import load_settings

    settings = load_settings(data_dir)
    values = {name: getattr(settings, name) for name in WORKER_FIELDS}
    secret = settings.worker_secret
    values["worker_secret"] = secret.get_secret_value() if secret is not None else None
    return WorkerSettings(**values)
