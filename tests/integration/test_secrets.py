"""Secrets: the env file's mode, and a key's secret never stored or logged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import running_stack

pytestmark = pytest.mark.integration


def test_first_start_writes_env_file_0600_and_refuses_a_readable_one(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=1) as s:
        env_file = tmp_path / "vectorpanda.env"
        assert (env_file.stat().st_mode & 0o777) == 0o600
        printed = "".join(s.output)
        assert str(env_file.resolve()) in printed
        assert s.admin_token not in printed  # the path is printed, never the token
    os.chmod(env_file, 0o644)
    proc = subprocess.run(
        [sys.executable, "-m", "vectorpanda", "up", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "chmod 600" in proc.stderr and str(env_file) in proc.stderr


def test_api_key_secret_never_stored_logged_or_shown_again(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=1) as s:
        with s.admin() as admin:
            cid = admin.post(
                "/admin/v1/clients", json={"name": "sec", "email": "s@example.com"}
            ).json()["client_id"]
            issued = admin.post(
                f"/admin/v1/clients/{cid}/keys",
                json={"scopes": ["read", "write", "manage"], "label": "ci"},
            ).json()
            api_key = issued["api_key"]
            secret = api_key.split("_", 2)[2]
            listing = admin.get(f"/admin/v1/clients/{cid}/keys").text
            events = admin.get("/admin/v1/events", params={"limit": 1000}).text
            assert secret not in listing and secret not in events
            verify = admin.get("/admin/v1/audit/verify").json()
            assert verify["ok"] is True and verify["mismatches"] == []
        with s.client(api_key) as c:
            c.post("/v1/collections", json={"name": "c", "dimension": 2})
            c.get("/v1/collections/c")
            c.get("/v1/collections/nope")
        output = "".join(s.output)
    shared = [
        f"{p.relative_to(tmp_path)} {p.stat().st_mode & 0o777:03o}"
        for p in tmp_path.rglob("*")
        if p.stat().st_mode & 0o077
    ]
    assert shared == [], "every file and directory is private to the service user"
    assert any(p.name.startswith("wal-") for p in tmp_path.rglob("*")), "worker files checked"
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "vectorpanda.env":
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in output
    log_lines = (tmp_path / "logs" / "requests.jsonl").read_text().splitlines()
    assert len(log_lines) >= 5
    import json

    # The in-process scheduler calls the admin API too, whenever its clock says (its
    # census on start, its hourly job at :17): the last data-plane line is the client's.
    records = [json.loads(line) for line in log_lines]
    record = [r for r in records if str(r["route"]).startswith("/v1/")][-1]
    assert set(record) >= {
        "ts",
        "request_id",
        "client_id",
        "route",
        "method",
        "status",
        "latency_ms",
    }
    assert record["client_id"] == cid and record["route"] == "/v1/collections/{name}"
