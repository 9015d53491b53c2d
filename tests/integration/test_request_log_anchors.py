"""The request log carries the signed chain head out at each rotation.

Real files: a generated event log (SQLite), the request-log handler exactly as
``vectorpanda up`` builds it (batched lines, rotated file), rotated for real by
writing past a small size limit; then the events' tail is cut as an attacker
with the database would, and ``audit verify --anchors <logs dir>`` is asked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson

from eventlog.anchors import (
    HeadAnchorer,
    LogHeadAnchorer,
    check_anchors,
    signature_ok,
    signing_key,
)
from eventlog.scan import snapshot_cursor
from eventlog.sqlite import open_engine
from tests.event_log_fixture import build_log, build_log_at
from vectorpanda.request_log import request_log_handler

SECRET = "request-log-anchor-secret"
EVENTS = 300


def rotate_once(log_dir: Path, sign: LogHeadAnchorer) -> None:
    """Write request lines through the real handler until the file has rotated."""
    handler = request_log_handler(log_dir, sign, max_bytes=4000)
    logger = logging.getLogger(f"test.requests.{id(handler)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        for batch in range(2):
            for i in range(50):
                line = {"request_id": f"r{batch}-{i}", "path": "/v1/x", "status": 200}
                logger.info(json.dumps(line))
            handler.flush()  # the second batch would take the file past 4,000 bytes: it rotates
    finally:
        logger.removeHandler(handler)
        handler.close()


def cut_tail(db: Path, after_seq: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM outbox WHERE seq > ?", (after_seq,))
        conn.execute("DELETE FROM events WHERE seq > ?", (after_seq,))
    finally:
        conn.close()


def test_a_rotated_request_log_ends_with_the_signed_head(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    store = build_log_at(db, EVENTS)
    anchors = tmp_path / "anchors"
    sign = LogHeadAnchorer(HeadAnchorer(SECRET, anchors), lambda: open_engine(db))
    logs = tmp_path / "logs"
    try:
        rotate_once(logs, sign)
    finally:
        sign.close()
    rotated = logs / "requests.jsonl.1"
    last = orjson.loads(rotated.read_bytes().splitlines()[-1])
    anchor = last["head_anchor"]
    head = store.head()
    assert (anchor["seq"], anchor["hash"]) == (EVENTS, head.hash)
    assert anchor["source"].startswith("request-log-")
    assert signature_ok(anchor, signing_key(SECRET).public_key())
    # The request lines before it are untouched, and the anchor is filed in <data>/anchors too.
    first = orjson.loads(rotated.read_bytes().splitlines()[0])
    assert first["request_id"] == "r0-0"
    assert [p.name for p in anchors.glob("*.json")] == [f"{EVENTS:012d}-{anchor['source']}.json"]
    # A log that grew since still reaches the anchored head.
    build_log(store, 20, seed=3, prefix="n")
    key = signing_key(SECRET).public_key()
    with snapshot_cursor(store.engine) as cursor:
        report = check_anchors(cursor, logs, key)
    assert report.checked == 1 and not report.mismatches
    assert report.last_anchored_seq == EVENTS
    assert report.last_anchor == "requests.jsonl.1 (rotation)"


def test_audit_verify_reads_the_rotated_logs_and_names_the_cut(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = data / "vectorpanda.env"
    env.write_text(f"VP_ANCHOR_SIGNING_KEY={SECRET}\n")
    env.chmod(0o600)
    db = data / "control.sqlite3"
    build_log_at(db, EVENTS)
    sign = LogHeadAnchorer(HeadAnchorer(SECRET, data / "anchors"), lambda: open_engine(db))
    logs = tmp_path / "copied-logs"
    try:
        rotate_once(logs, sign)
    finally:
        sign.close()
    # Only the copied request logs prove the length: the anchors directory is gone too.
    shutil.rmtree(data / "anchors")
    cut_tail(db, EVENTS - 100)

    def verify(*extra: str) -> tuple[int, dict[str, object]]:
        command = [sys.executable, "-m", "vectorpanda", "audit", "verify", "--json", *extra]
        run = subprocess.run(
            [*command, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("VP_")},
        )
        assert run.returncode in (0, 1), run.stderr
        return run.returncode, json.loads(run.stdout)

    code, alone = verify()
    assert code == 0 and alone["ok"]  # nothing inside the data directory remembers the tail
    code, verdict = verify("--anchors", str(logs))
    assert code == 1 and not verdict["ok"]
    assert verdict["anchors"] == {
        "checked": 1,
        "last_anchored_seq": EVENTS,
        "last_anchor": "requests.jsonl.1 (rotation)",
    }
    assert verdict["first_bad_seq"] == EVENTS
    [reason] = [m["reason"] for m in verdict["mismatches"]]  # type: ignore[union-attr]
    assert f"the log ends at seq {EVENTS - 100}" in reason
    assert "requests.jsonl.1 (rotation)" in reason


def test_an_altered_rotation_anchor_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    store = build_log_at(db, EVENTS)
    sign = LogHeadAnchorer(HeadAnchorer(SECRET, tmp_path / "anchors"), lambda: open_engine(db))
    logs = tmp_path / "logs"
    try:
        rotate_once(logs, sign)
    finally:
        sign.close()
    rotated = logs / "requests.jsonl.1"
    lines = rotated.read_bytes().splitlines()
    record = orjson.loads(lines[-1])
    record["head_anchor"]["seq"] = EVENTS - 50  # claims a shorter log was all there was
    rotated.write_bytes(b"\n".join([*lines[:-1], orjson.dumps(record)]) + b"\n")
    with snapshot_cursor(store.engine) as cursor:
        report = check_anchors(cursor, logs, signing_key(SECRET).public_key())
    assert [(m.seq, "no valid signature" in m.reason) for m in report.mismatches] == [
        (EVENTS - 50, True)
    ]
