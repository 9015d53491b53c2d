"""Pause and resume through the admin API of a real ``vectorpanda up``; census and usage too."""

from __future__ import annotations

import gzip
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eventlog.hashchain import GENESIS_HASH
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from tests.integration.test_pause_move_crash import CHILD, REPO
from tests.stack import Stack, running_stack
from workers.tenant_move import location, tree_checksums

pytestmark = pytest.mark.integration

DIM = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("vp-pause")
    with running_stack(data_dir, VP_USAGE_FLUSH_S="0.5") as s:
        yield s


def _client_id(stack: Stack, name: str) -> str:
    with stack.admin() as admin:
        for c in admin.get("/admin/v1/clients").json()["clients"]:
            if c["name"] == name:
                return str(c["client_id"])
    raise AssertionError("client not found")


def _wait(what: str, check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_pause_moves_to_cold_answers_423_and_resume_serves_the_same_data(stack: Stack) -> None:
    key = stack.new_client("pausy")
    hot, cold = stack.data_dir / "hot", stack.data_dir / "cold"
    vectors = [{"id": f"v{i}", "values": [float(i), 1.0, 2.0, 3.0]} for i in range(40)]
    with stack.client(key) as api, stack.admin() as admin:
        cid = _client_id(stack, "pausy")
        spec = {"name": "docs", "dimension": DIM, "metric": "l2", "index": "flat"}
        assert api.post("/v1/collections", json=spec).status_code == 201
        assert api.post("/v1/collections/docs/upsert", json={"vectors": vectors}).status_code == 200
        before = api.post("/v1/collections/docs/fetch", json={"ids": ["v7"]}).json()

        r = admin.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "testing the cold tier"})
        assert r.status_code == 200 and r.json()["status"] == "paused"
        r = api.get("/v1/collections")
        assert r.status_code == 423
        assert r.json()["error"]["code"] == "paused" and "resume" in r.json()["error"]["message"]
        assert not (hot / cid).exists() and (cold / cid).is_dir()
        cold_sums = tree_checksums(cold / cid)
        storage = admin.get(f"/admin/v1/clients/{cid}/storage").json()
        assert storage["location"] == "cold" and storage["vectors"] == 40
        assert [c["name"] for c in storage["collections"]] == ["docs"]
        shown = admin.get(f"/admin/v1/clients/{cid}").json()
        assert shown["status"] == "paused" and shown["usage"]["storage"]["vectors"] == 40
        # Pausing twice is one pause.
        admin.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "again"}).raise_for_status()
        paused = admin.get("/admin/v1/events", params={"type": "client.paused", "client_id": cid})
        assert [e["actor"] for e in paused.json()["events"]] == ["admin"]

        assert admin.post(f"/admin/v1/clients/{cid}/resume").status_code == 422  # no reason
        r = admin.post(f"/admin/v1/clients/{cid}/resume", json={"reason": "paid"})
        assert r.status_code == 200 and r.json()["status"] == "active"
        assert (hot / cid).is_dir() and not (cold / cid).exists()
        assert tree_checksums(hot / cid) == cold_sums
        assert api.post("/v1/collections/docs/fetch", json={"ids": ["v7"]}).json() == before
        q = api.post("/v1/collections/docs/query", json={"vector": [7.0, 1, 2, 3], "top_k": 1})
        assert q.json()["matches"][0]["id"] == "v7"

        # The notifier (no SMTP under `up`) wrote each email as an .eml file: client + ops.
        mail = stack.data_dir / "mail"
        emls = _wait(
            "4 emails", lambda: len(list(mail.glob("*.eml"))) >= 4 and list(mail.glob("*.eml"))
        )
        time.sleep(1.0)
        emls = sorted(mail.glob("*.eml"))
        subjects = sorted(
            next(line for line in p.read_text().splitlines() if line.startswith("Subject:"))
            for p in emls
        )
        assert len(emls) == 4, subjects
        assert sum("paused" in s for s in subjects) == 2
        assert sum("resumed" in s for s in subjects) == 2
        scraped = admin.get("/metrics").text
        assert "vectorpanda_emails_sent_total 4.0" in scraped, "the notifier counts what it sent"


def test_usage_is_metered_and_reported(stack: Stack) -> None:
    key = stack.new_client("meter")
    with stack.client(key) as api, stack.admin() as admin:
        spec = {"name": "m", "dimension": DIM, "metric": "l2", "index": "flat"}
        api.post("/v1/collections", json=spec).raise_for_status()
        api.post(
            "/v1/collections/m/upsert",
            json={"vectors": [{"id": str(i), "values": [1.0, 2, 3, 4]} for i in range(5)]},
        ).raise_for_status()
        for _ in range(3):
            api.post("/v1/collections/m/query", json={"vector": [1.0, 2, 3, 4]}).raise_for_status()
        assert api.get("/v1/collections/nope").status_code == 404

        def row():  # type: ignore[no-untyped-def]
            body = admin.get("/admin/v1/usage", params={"since": "2000-01-01T00:00:00Z"}).json()
            rows = [r for r in body["clients"] if r["queries"] >= 3 and r["vectors_upserted"] == 5]
            return rows[0] if rows and rows[0]["requests"] >= 6 else None

        got = _wait("usage", row)
        assert got["rejected"] >= 1 and got["vectors_stored"] == 5


def census_due(moment: datetime) -> str:
    """The UTC date whose census the default cron (00:05 daily) has made due by ``moment``."""
    return (moment - timedelta(minutes=5)).date().isoformat()


def test_census_archive_matches_its_event_and_the_log(stack: Stack) -> None:
    with stack.admin() as admin:
        # The in-process scheduler takes the census due on start (the oldest snapshot):
        # yesterday's before 00:05 UTC, today's after, so its date is read, not assumed;
        # it is the one due at some moment between the stack's start and now.
        first = _wait("census", lambda: admin.get("/admin/v1/census").json()["snapshots"])[0]
        assert stack.started_at is not None
        due = {census_due(stack.started_at), census_due(datetime.now(UTC))}
        assert first["date"] in due, (first["date"], due)
        # A second census for that date is a no-op.
        again = admin.post("/admin/v1/census", json={"date": first["date"]}).json()
        assert again["taken"] is False and again["sha256"] == first["sha256"]
        assert first["event"]["actor"] == "scheduler"
        data = Path(first["archive"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == first["sha256"]
        lines = [json.loads(x) for x in gzip.decompress(data).splitlines()]
        assert lines[0]["head_hash"] == first["head_hash"]
        assert lines[0]["head_seq"] == first["head_seq"] < first["event"]["seq"]
        # The head it names is the log's: the census on start may come before the first
        # test's events (an empty log, whose head is the genesis) or after some of them.
        if first["head_seq"] == 0:
            assert first["head_hash"] == GENESIS_HASH
        else:
            head = admin.get(
                "/admin/v1/events", params={"after_seq": first["head_seq"] - 1, "limit": 1}
            ).json()["events"][0]
            assert head["seq"] == first["head_seq"] and head["hash"] == first["head_hash"]
        assert admin.get("/admin/v1/audit/verify").json()["ok"] is True


def test_restart_finishes_an_interrupted_move_and_deletes_only_on_request(stack: Stack) -> None:
    """Last in this module: it stops the module's stack and starts another on its data."""
    data = stack.data_dir
    hot, cold = data / "hot", data / "cold"
    key = stack.new_client("crashy")
    with stack.client(key) as api, stack.admin() as admin:
        cid = _client_id(stack, "crashy")
        spec = {"name": "c", "dimension": 2, "metric": "ip", "index": "flat"}
        api.post("/v1/collections", json=spec).raise_for_status()
        rows = [{"id": str(i), "values": [float(i), 1.0]} for i in range(25)]
        api.post("/v1/collections/c/upsert", json={"vectors": rows}).raise_for_status()
        admin.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "x"}).raise_for_status()
    stack.stop()
    sums = tree_checksums(cold / cid)
    # A resume killed after the hot copy was renamed into place, before the switch.
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(hot), str(cold), cid, "hot", "renamed", "1"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL
    assert location(hot, cid) == "cold" and (hot / cid).is_dir() and (cold / cid).is_dir()
    with running_stack(data) as again, again.admin() as admin, again.client(key) as api:
        # The client is still paused: the restart settles the files where that says.
        assert api.get("/v1/collections").status_code == 423
        _wait("the restart to clear the half-resumed hot copy", lambda: not (hot / cid).exists())
        assert tree_checksums(cold / cid) == sums
        storage = admin.get(f"/admin/v1/clients/{cid}/storage").json()
        assert storage["location"] == "cold" and storage["vectors"] == 25
        admin.post(f"/admin/v1/clients/{cid}/resume", json={"reason": "paid"}).raise_for_status()
        assert location(hot, cid) == "hot" and not (cold / cid).exists()
        assert tree_checksums(hot / cid) == sums
        got = api.post("/v1/collections/c/fetch", json={"ids": ["7"]}).json()
        assert got["vectors"]["7"]["values"] == [7.0, 1.0]
        for _ in range(3):
            api.post("/v1/collections/c/query", json={"vector": [1.0, 0.0]}).raise_for_status()
        # Paused again, then explicitly deleted: only now does the cold copy go.
        admin.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "y"}).raise_for_status()
        assert (cold / cid).is_dir()
        assert (
            admin.delete(f"/admin/v1/clients/{cid}", params={"reason": "closed"}).status_code == 204
        )
        assert not (cold / cid).exists() and not (hot / cid).exists()
        assert location(hot, cid) == "hot"
    # This stack flushes usage hourly: the queries above are recorded by the shutdown flush.
    store = SqliteEventStore(open_engine(data / "control.sqlite3"))
    usage = store.read(0, 1000, cid, "usage.recorded")
    assert sum(e.data["queries"] for e in usage) == 3
