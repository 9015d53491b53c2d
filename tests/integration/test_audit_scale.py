"""Streaming verify and replay on a generated log, tampering, checkpoints and anchors.

Real SQLite files, a few thousand generated events (tests/event_log_fixture.py);
the live audit tables are built by the projector's own code path
(``AuditProjection.apply``), and tampering goes straight at the files, as an
attacker with the database would, dropping the append-only triggers first.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.accounts import Accounts, CreateClient
from coordinator.census import CensusTaker
from eventlog.anchors import HeadAnchorer, sign_head, signature_ok, signing_key
from eventlog.events import AuditCheckpointRecorded
from eventlog.hashchain import canonical_json, chain_hash
from eventlog.records import MAX_READ_LIMIT
from eventlog.store import SqliteEventStore
from projections.audit_checkpoint import (
    NoAuditCheckpoint,
    record_checkpoint,
    verify_since_checkpoint,
)
from projections.audit_store import AuditProjection, table_digests
from projections.audit_verify import run_verify
from projections.replay import (
    ReplayTargetExists,
    replay_into,
    replay_with_digests,
    verify_audit,
)
from tests.event_log_fixture import build_log, build_log_at

EVENTS = 5000
SECRET = "anchor-secret-for-the-tests"


def project(store: SqliteEventStore, audit_db: Path) -> int:
    """Bring the live audit tables up to the log's head the way the projector does."""
    projection = AuditProjection.at(audit_db)
    try:
        cp = projection.checkpoint()
        while page := store.read(after_seq=cp, limit=MAX_READ_LIMIT):
            cp = projection.apply(page)
        return cp
    finally:
        projection.close()


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[SqliteEventStore, Path]:
    store = build_log_at(tmp_path / "control.sqlite3", EVENTS)
    audit = tmp_path / "audit.sqlite3"
    assert project(store, audit) == EVENTS
    return store, audit


def sql(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for text, args in statements:
            conn.execute(text, args)
    finally:
        conn.close()


def event_row(db: Path, seq: int) -> dict[str, object]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone())
    finally:
        conn.close()


def test_streaming_replay_equals_the_projector_and_verify_passes(
    fleet: tuple[SqliteEventStore, Path], tmp_path: Path
) -> None:
    store, audit = fleet
    assert replay_into(store, tmp_path / "replay.sqlite3") == EVENTS
    live = AuditProjection.at(audit)
    fresh = AuditProjection.at(tmp_path / "replay.sqlite3")
    try:
        assert table_digests(fresh.engine) == table_digests(live.engine)
        assert fresh.checkpoint() == EVENTS
    finally:
        live.close()
        fresh.close()
    report = verify_audit(store, audit)
    assert report.ok, report.mismatches
    assert report.events == EVENTS and report.checkpoint == EVENTS
    assert report.tables["audit_log"] == EVENTS and report.tables["usage"] > EVENTS // 3
    assert report.head_hash == store.head().hash


@pytest.mark.parametrize("apart_over", [None, 0], ids=["one-process", "writer-process"])
def test_replay_reports_the_digests_of_the_tables_it_wrote(
    fleet: tuple[SqliteEventStore, Path], tmp_path: Path, apart_over: int | None
) -> None:
    store, audit = fleet
    target = tmp_path / "replay.sqlite3"
    seq, digests = replay_with_digests(store, target, apart_over=apart_over)
    assert seq == EVENTS
    written = AuditProjection.at(target)
    live = AuditProjection.at(audit)
    try:
        # Hashed as written, equal to reading the finished file back and to the live tables.
        assert digests == table_digests(written.engine) == table_digests(live.engine)
        assert written.checkpoint() == EVENTS
        # The secondary indexes, dropped while writing, are all there again.
        with written.engine.connect() as conn:
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
        assert {"ix_audit_log_client", "ix_audit_log_type", "ix_usage_client"} <= names
    finally:
        written.close()
        live.close()
    with pytest.raises(ReplayTargetExists):
        replay_with_digests(store, target, apart_over=apart_over)


def test_a_writer_process_that_fails_fails_the_replay(
    fleet: tuple[SqliteEventStore, Path], tmp_path: Path
) -> None:
    store, _ = fleet
    (tmp_path / "not-a-directory").write_text("")
    with pytest.raises(RuntimeError, match="the replay's writer failed"):
        replay_with_digests(store, tmp_path / "not-a-directory" / "r.sqlite3", apart_over=0)


@pytest.mark.parametrize("chain_apart_over", [None, 0], ids=["one-process", "two-processes"])
def test_a_changed_field_is_named_by_its_seq(
    fleet: tuple[SqliteEventStore, Path], chain_apart_over: int | None
) -> None:
    store, audit = fleet
    db = audit.with_name("control.sqlite3")
    sql(
        db,
        ("DROP TRIGGER events_no_update", ()),
        ("UPDATE events SET actor = 'mallory' WHERE seq = ?", (1234,)),
    )
    report = verify_audit(store, audit, chain_apart_over=chain_apart_over)
    assert report.events == EVENTS and report.head_hash == store.head().hash
    assert not report.ok and report.first_bad_seq == 1234
    reasons = {m.reason for m in report.mismatches if m.seq == 1234}
    assert "hash does not match the event's contents" in reasons
    assert "audit_log differs from the replay" in reasons


def test_a_rehashed_row_breaks_the_next_link(fleet: tuple[SqliteEventStore, Path]) -> None:
    store, audit = fleet
    db = audit.with_name("control.sqlite3")
    row = event_row(db, 2500)
    data = json.loads(str(row["data"]))
    fields = {k: row[k] for k in ("seq", "event_id", "type", "schema_version", "occurred_at")}
    forged = chain_hash(
        str(row["prev_hash"]), **fields, actor="mallory", client_id=row["client_id"], data=data
    )  # type: ignore[arg-type]
    sql(
        db,
        ("DROP TRIGGER events_no_update", ()),
        ("UPDATE events SET actor = 'mallory', hash = ? WHERE seq = 2500", (forged,)),
    )
    report = verify_audit(store, audit)
    assert not report.ok and report.first_bad_seq == 2500
    assert any(
        m.seq == 2501 and m.reason == "prev_hash does not match the previous event's hash"
        for m in report.mismatches
    )


def test_a_deleted_middle_row_is_named(fleet: tuple[SqliteEventStore, Path]) -> None:
    store, audit = fleet
    db = audit.with_name("control.sqlite3")
    sql(
        db,
        ("DROP TRIGGER events_no_delete", ()),
        ("DELETE FROM outbox WHERE seq = 3000", ()),
        ("DELETE FROM events WHERE seq = 3000", ()),
    )
    report = verify_audit(store, audit)
    assert not report.ok and report.first_bad_seq == 3000
    gap = [m for m in report.mismatches if m.reason == "seq gap: expected 3000, found 3001"]
    assert [m.seq for m in gap] == [3001]


def test_a_cut_tail_with_rebuilt_projections_is_caught_only_by_the_anchor(
    fleet: tuple[SqliteEventStore, Path], tmp_path: Path
) -> None:
    store, audit = fleet
    anchors = tmp_path / "anchors"
    anchorer = HeadAnchorer(SECRET, anchors)
    anchorer.anchor(2000, event_row(audit.with_name("control.sqlite3"), 2000)["hash"], "t1", "x")  # type: ignore[arg-type]
    head = store.head()
    anchorer.anchor(head.seq, head.hash, "2026-11-29T00:05:00Z", "census-2026-11-29")
    db = audit.with_name("control.sqlite3")
    sql(
        db,
        ("DROP TRIGGER events_no_delete", ()),
        ("DELETE FROM outbox WHERE seq > ?", (EVENTS - 100,)),
        ("DELETE FROM events WHERE seq > ?", (EVENTS - 100,)),
    )
    # The attacker rebuilds the projections from the shortened log, so they agree with it.
    os.remove(audit)
    for suffix in ("-wal", "-shm"):
        if Path(f"{audit}{suffix}").exists():
            os.remove(f"{audit}{suffix}")
    replay_into(store, audit)
    assert verify_audit(store, audit).ok  # nothing inside the databases remembers the tail
    key = signing_key(SECRET).public_key()
    verdict = run_verify(store, audit, anchors_dir=anchors, anchor_key=key)
    assert not verdict.ok
    summary = verdict.summary()
    assert summary["anchors"] == {
        "checked": 2,
        "last_anchored_seq": EVENTS,
        "last_anchor": f"{EVENTS:012d}-census-2026-11-29.json",
    }
    assert summary["first_bad_seq"] == EVENTS
    reason = summary["mismatches"][0]["reason"]
    assert f"the log ends at seq {EVENTS - 100}" in reason
    assert f"{EVENTS:012d}-census-2026-11-29.json" in reason


def test_a_forged_or_altered_anchor_is_refused(
    fleet: tuple[SqliteEventStore, Path], tmp_path: Path
) -> None:
    store, audit = fleet
    anchors = tmp_path / "anchors"
    head = store.head()
    genuine = HeadAnchorer(SECRET, anchors).anchor(head.seq, head.hash, "t", "census-a")
    key = signing_key(SECRET).public_key()
    assert signature_ok(genuine, key)
    assert run_verify(store, audit, anchors_dir=anchors, anchor_key=key).ok
    # Signed with a key of the attacker's own, claiming a shorter log is all there was.
    forged = sign_head(signing_key("mallory"), 4000, "f" * 64, "t", "census-b")
    (anchors / "000000004000-census-b.json").write_text(json.dumps(forged))
    altered = {**genuine, "hash": "e" * 64}
    (anchors / "000000005000-census-a.json").write_text(json.dumps(altered))
    verdict = run_verify(store, audit, anchors_dir=anchors, anchor_key=key)
    assert not verdict.ok
    assert [(m.seq, "no valid signature" in m.reason) for m in verdict.mismatches] == [
        (4000, True),
        (5000, True),
    ]


def test_incremental_verify_checks_only_what_came_after_the_checkpoint(
    fleet: tuple[SqliteEventStore, Path],
) -> None:
    store, audit = fleet
    with pytest.raises(NoAuditCheckpoint):
        verify_since_checkpoint(store, audit)
    full = verify_audit(store, audit)
    stored = record_checkpoint(store, full, "test")
    assert stored is not None and stored.seq == EVENTS + 1
    event = stored.to_event()
    assert isinstance(event, AuditCheckpointRecorded)
    assert (event.verified_seq, event.verified_hash) == (EVENTS, full.head_hash)
    build_log(store, 1000, seed=21, prefix="d")  # new clients; and events of old ones
    assert project(store, audit) == EVENTS + 1001
    report = verify_since_checkpoint(store, audit)
    assert report.ok, report.mismatches
    assert report.since_seq == EVENTS and report.events == 1001
    assert report.verified_seq == EVENTS + 1001
    assert verify_audit(store, audit).ok  # the checkpoint event folds the same way in full
    # A table row after the checkpoint edited behind the projector's back is caught ...
    sql(audit, ("UPDATE usage SET requests = requests + 1 WHERE seq > ?", (EVENTS + 500,)))
    bad = verify_since_checkpoint(store, audit)
    assert not bad.ok and bad.mismatches[0].reason == "usage differs from the replay"
    assert bad.first_bad_seq is not None and bad.first_bad_seq > EVENTS + 500
    # ... and so is a rewrite of the verified event the checkpoint links to.
    sql(
        audit.with_name("control.sqlite3"),
        ("DROP TRIGGER events_no_update", ()),
        ("UPDATE events SET hash = ? WHERE seq = ?", ("0" * 64, EVENTS)),
    )
    relinked = verify_since_checkpoint(store, audit)
    assert relinked.first_bad_seq == EVENTS
    reason = "the event no longer has the hash its checkpoint recorded"
    assert relinked.mismatches[0].reason == reason


async def test_the_census_archive_carries_a_signed_head(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    await accounts.handle(CreateClient(name="a", email="a@x.test"))
    anchors = tmp_path / "anchors"
    census = CensusTaker(accounts, tmp_path / "archive", anchorer=HeadAnchorer(SECRET, anchors))
    stored, taken = await census.take("2027-03-05", "scheduler")
    assert taken
    with gzip.open(str(stored.data["archive"]), "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())
    anchor = header["head_anchor"]
    assert (anchor["seq"], anchor["hash"]) == (header["head_seq"], header["head_hash"])
    assert signature_ok(anchor, signing_key(SECRET).public_key())
    assert not signature_ok(anchor, signing_key("another").public_key())
    filed = json.loads((anchors / f"{header['head_seq']:012d}-census-2027-03-05.json").read_text())
    assert canonical_json(filed) == canonical_json(anchor)


def test_the_cli_records_a_checkpoint_anchors_it_and_verifies_since(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = data / "vectorpanda.env"
    env.write_text(f"VP_ANCHOR_SIGNING_KEY={SECRET}\n")
    env.chmod(0o600)
    store = build_log_at(data / "control.sqlite3", 2000)
    project(store, data / "audit.sqlite3")

    def cli(*args: str) -> tuple[int, dict[str, object]]:
        run = subprocess.run(
            [sys.executable, "-m", "vectorpanda", "audit", *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("VP_")},
        )
        assert run.returncode in (0, 1), run.stderr
        return run.returncode, json.loads(run.stdout)

    code, full = cli("verify", "--json", "--record-checkpoint")
    assert code == 0 and full["mode"] == "full" and full["verified_seq"] == 2000
    recorded = full["recorded_checkpoint"]
    assert isinstance(recorded, dict) and recorded["seq"] == 2001
    assert Path(str(recorded["anchor"])).name == "000000002001-audit-checkpoint.json"
    project(store, data / "audit.sqlite3")
    code, since = cli("verify", "--json", "--since-checkpoint")
    assert code == 0 and since["mode"] == "incremental" and since["events"] == 1
    assert since["anchors"] == {
        "checked": 1,
        "last_anchored_seq": 2001,
        "last_anchor": "000000002001-audit-checkpoint.json",
    }
    build_log(store, 10, seed=5, prefix="e")
    code, anchored = cli("anchor")
    assert code == 0 and anchored["seq"] == 2011 and anchored["hash"] == store.head().hash
    assert Path(str(anchored["file"])).parent == data / "anchors"
    project(store, data / "audit.sqlite3")
    code, again = cli("verify", "--json")
    assert code == 0 and again["anchors"]["checked"] == 2  # type: ignore[index]


def old_verdict(store: SqliteEventStore, audit: Path, tmp: Path) -> list[tuple[int, str]]:
    """The verify this replaced: whole tables as lists, a full replay, first difference each."""
    from eventlog.sqlite import read_transaction
    from projections.audit_store import _checkpoint, table_rows
    from projections.tables import PROJECTED

    def snapshot(db: Path) -> tuple[int, dict[str, list[dict[str, Any]]]]:
        projection = AuditProjection.at(db)
        try:
            with read_transaction(projection.engine) as conn:
                rows = {t.name: table_rows(conn, t) for t in PROJECTED}
                return _checkpoint(conn, projection.name), rows
        finally:
            projection.close()

    checkpoint, live = snapshot(audit)
    fresh_db = AuditProjection.at(tmp / "old-replay.sqlite3")
    cp = 0
    while cp < checkpoint and (page := store.read(after_seq=cp, limit=MAX_READ_LIMIT)):
        cp = fresh_db.apply([e for e in page if e.seq <= checkpoint])
    fresh_db.close()
    _, fresh = snapshot(tmp / "old-replay.sqlite3")
    found = [(m.seq, m.reason) for m in store.verify_chain().mismatches]
    for table in PROJECTED:
        a, b = live[table.name], fresh[table.name]
        if table.name == "client_state":
            ids = {r["client_id"]: r for r in a}, {r["client_id"]: r for r in b}
            seqs = [
                min(int(x.get("updated_seq", 1 << 62)), int(y.get("updated_seq", 1 << 62)))
                for cid in ids[0].keys() | ids[1].keys()
                if (x := ids[0].get(cid, {})) != (y := ids[1].get(cid, {}))
            ]
            first = min(seqs) if seqs else None
        else:
            diffs = [
                min(int(x["seq"]), int(y["seq"])) for x, y in zip(a, b, strict=False) if x != y
            ]
            first = diffs[0] if diffs else None
            if first is None and len(a) != len(b):
                longer = a if len(a) > len(b) else b
                first = int(longer[min(len(a), len(b))]["seq"])
        if first is not None:
            found.append((first, f"{table.name} differs from the replay"))
    return sorted(found)


@pytest.mark.parametrize(
    "tamper",
    ["none", "event-field", "live-row", "live-state", "missing-live-row", "lagging"],
)
def test_streaming_verify_gives_the_old_verdict(
    fleet: tuple[SqliteEventStore, Path], tmp_path: Path, tamper: str
) -> None:
    store, audit = fleet
    db = audit.with_name("control.sqlite3")
    if tamper == "event-field":
        sql(
            db,
            ("DROP TRIGGER events_no_update", ()),
            ("UPDATE events SET occurred_at = 'x' WHERE seq = 777", ()),
        )
    elif tamper == "live-row":
        sql(
            audit,
            (
                "UPDATE billing_ledger SET amount_cents = 1 "
                "WHERE seq = (SELECT max(seq) FROM billing_ledger)",
                (),
            ),
        )
    elif tamper == "live-state":
        sql(
            audit,
            (
                "UPDATE client_state SET tier = 'premium', status = 'x' "
                "WHERE client_id = 'c00000003'",
                (),
            ),
        )
    elif tamper == "missing-live-row":
        sql(
            audit,
            ("DELETE FROM usage WHERE seq = (SELECT min(seq) FROM usage WHERE seq > 2500)", ()),
        )
    elif tamper == "lagging":
        build_log(store, 300, seed=9, prefix="z")
    new = verify_audit(store, audit)
    assert sorted((m.seq, m.reason) for m in new.mismatches) == old_verdict(store, audit, tmp_path)
    assert new.ok == (tamper in ("none", "lagging"))
