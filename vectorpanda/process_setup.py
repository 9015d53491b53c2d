"""Process setup shared by every entry point: secrets, data directory mode, logging.

Kept free of the coordinator's web stack (FastAPI, SQLAlchemy, the dashboard), so a
worker process that uses it does not load those libraries.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vectorpanda.request_log import HeadSigner, request_log_handler

if TYPE_CHECKING:  # the worker's own settings leave pydantic out (worker_settings)
    from vectorpanda.settings import Settings

log = logging.getLogger("vectorpanda")


class MissingSecretError(RuntimeError):
    """A required secret is not configured."""


def require_secret(settings: Settings, name: str) -> str:
    """The value of a secret setting, or a clear error naming where to put it."""
    value = getattr(settings, name)
    if value is None or not value.get_secret_value():
        raise missing_secret(settings.data_dir, name)
    secret: str = value.get_secret_value()
    return secret


def missing_secret(data_dir: Path, name: str) -> MissingSecretError:
    """The error for the secret setting ``name`` left unset."""
    return MissingSecretError(
        f"VP_{name.upper()} is not set: put it in the env file "
        f"({data_dir}/vectorpanda.env, mode 0600) or the environment"
    )


def warn_if_shared(directory: Path) -> None:
    """Say loudly when a data directory is open to group or others."""
    mode = directory.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "data directory %s has mode %03o: other local users can reach tenant data "
            "and the event log; run: chmod 700 %s",
            directory,
            mode,
            directory,
        )


def configure_logging(settings: Settings, request_log_to_file: bool) -> None:
    """Human logs on stderr; the request log as JSON lines (file under ``up``)."""
    if getattr(configure_logging, "done", False):
        return
    sign = None
    if request_log_to_file and settings.anchor_signing_key is not None:
        # Only the coordinator writes the request log to a file: the control database
        # (SQLAlchemy) is imported here, not by the worker processes.
        from eventlog.anchors import HeadAnchorer, LogHeadAnchorer
        from vectorpanda.control_db import control_engine

        # Each rotation of the request log ends the old file with the signed chain head.
        anchorer = HeadAnchorer(
            settings.anchor_signing_key.get_secret_value(), settings.anchors_dir
        )
        sign = LogHeadAnchorer(anchorer, lambda: control_engine(settings))
    _start_logging(settings.logs if request_log_to_file else None, sign)


def configure_worker_logging() -> None:
    """A worker's logging: as ``configure_logging(settings, request_log_to_file=False)``."""
    if getattr(configure_logging, "done", False):
        return
    _start_logging(None, None)


def _start_logging(request_log_dir: Path | None, sign: HeadSigner | None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    requests = logging.getLogger("vectorpanda.requests")
    requests.propagate = False
    handler = request_log_handler(request_log_dir, sign)
    requests.addHandler(handler)  # logging.shutdown() at exit flushes what is buffered
    configure_logging.done = True  # type: ignore[attr-defined]
