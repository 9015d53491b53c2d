"""The whole stack (`vectorpanda up`) with its control plane on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from eventlog.database import postgres_url
from tests.stack import running_stack

pytestmark = pytest.mark.integration


def _wait_for_checkpoint(pg_url: str, consumer: str, at_least: int, within_s: float) -> int:
    """The consumer's checkpoint in PostgreSQL once it reaches ``at_least`` (or at the end)."""
    engine = create_engine(postgres_url(pg_url))
    deadline = time.monotonic() + within_s
    try:
        while True:
            with engine.connect() as conn:
                query = text("SELECT seq FROM consumer_checkpoints WHERE consumer = :c")
                seq = conn.execute(query, {"c": consumer}).scalar()
            if (seq is not None and seq >= at_least) or time.monotonic() > deadline:
                return int(seq or 0)
            time.sleep(0.2)
    finally:
        engine.dispose()


def test_admin_actions_land_in_postgresql_and_keys_work(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "vp"
    with running_stack(data, workers=1, VP_DATABASE_URL=pg_url) as stack:
        api_key = stack.new_client("acme")
        with stack.client(api_key) as c:
            r = c.post("/v1/collections", json={"name": "docs", "dimension": 3})
            assert r.status_code in (200, 201), r.text
        with stack.admin() as admin:
            events = admin.get("/admin/v1/events", params={"limit": 1000}).json()["events"]
            metrics = admin.get("/metrics").text
            assert "vectorpanda_event_log_probe_up 1.0" in metrics, metrics[-2000:]
            r = admin.get("/admin/v1/audit/verify")
            assert r.status_code == 200 and r.json()["ok"] is True, r.text
        # The notifier follows the shared log on its own schedule: wait for it to pass the
        # client's creation and key issue (seq 1 and 2) before the stack stops.
        notified = _wait_for_checkpoint(pg_url, "notifier", at_least=2, within_s=30.0)
        assert "Traceback" not in "".join(stack.output), "".join(stack.output)[-3000:]
    assert notified >= 2, notified  # it followed the shared log
    assert not (data / "control.sqlite3").exists()
    # The notifier, the scheduler's jobs and the sessions are in PostgreSQL too.
    for local in ("notifier.sqlite3", "scheduler.sqlite3", "sessions.sqlite3"):
        assert not (data / local).exists(), local
    engine = create_engine(postgres_url(pg_url))
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT seq, type FROM events ORDER BY seq")).all()
            clients = conn.execute(text("SELECT name FROM clients")).scalars().all()
            jobs = conn.execute(text("SELECT id FROM apscheduler_jobs ORDER BY id")).scalars()
            assert list(jobs) == ["auto_pause_and_anomalies", "backups", "census", "restore_drill"]
    finally:
        engine.dispose()
    # Shutdown may record one more (the usage flush): the API's view is a prefix.
    assert [(e["seq"], e["type"]) for e in events] == [tuple(r) for r in stored][: len(events)]
    assert {"client.created", "api_key.issued"} <= {t for _, t in stored}
    assert clients == ["acme"]

    # The audit CLI reads the same log from the server (its own process, env as a coordinator's).
    env = {**os.environ, "VP_DATABASE_URL": pg_url}
    env.pop("VP_DATA_DIR", None)
    cmd = [sys.executable, "-m", "vectorpanda", "audit", "verify", "--json"]
    cmd += ["--data-dir", str(data)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] is True and summary["events"] == len(stored)
