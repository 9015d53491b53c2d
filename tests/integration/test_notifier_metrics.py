"""A separate `vectorpanda notifier` process serves its email counters over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import free_port
from vectorpanda.settings import ensure_env_file

pytestmark = pytest.mark.integration


def test_notifier_process_exposes_email_counters(tmp_path: Path) -> None:
    ensure_env_file(tmp_path / "vectorpanda.env")
    port = free_port()
    env = {**os.environ, "VP_DATA_DIR": str(tmp_path), "VP_NOTIFIER_METRICS_PORT": str(port)}
    env.pop("VP_AMQP_URL", None)  # polls the event log: no broker needed for this check
    proc = subprocess.Popen(
        [sys.executable, "-m", "vectorpanda", "notifier"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert "vectorpanda_emails_sent_total 0.0" in body
        assert "vectorpanda_emails_failed_total 0.0" in body
    finally:
        proc.terminate()
        proc.wait(15)
