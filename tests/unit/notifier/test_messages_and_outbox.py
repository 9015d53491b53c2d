"""Emails resist header injection; the outbox holds each (event, recipient) once."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from pathlib import Path

from eventlog.events import (
    BackupFailed,
    BackupTaken,
    ClientCreated,
    ClientPaused,
    RestoreDrillCompleted,
    TierChanged,
)
from eventlog.memory_store import InMemoryEventStore
from notifier.messages import Notice, build_email
from notifier.outbox import NotifierOutbox


def test_a_hostile_client_name_cannot_add_headers() -> None:
    evil = "Mallory\r\nBcc: victim@example.com\r\nX-Evil: 1 <script>alert(1)</script>"
    notice = Notice("e1", "client.paused", "c1", evil, {"reason": "x\r\nCc: a@b.c"})
    msg = build_email(notice, "VectorPanda <noreply@vp.test>", "client@example.com", "vp.test")
    parsed = message_from_bytes(msg.as_bytes(), policy=default)
    assert parsed["Bcc"] is None and parsed["Cc"] is None and parsed["X-Evil"] is None
    assert "\n" not in str(parsed["Subject"]) and "Mallory" in str(parsed["Subject"])
    html = parsed.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    plain = parsed.get_body(("plain",)).get_content()
    assert "resume" in plain


def test_outbox_rows_are_unique_per_event_and_recipient(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    store.append(
        [
            ClientCreated(client_id="c1", name="Acme", email="acme@x.test", tier="free"),
            TierChanged(client_id="c1", from_tier="free", to_tier="standard"),
            ClientPaused(client_id="c1", reason="unpaid"),
        ],
        actor="admin",
    )
    outbox = NotifierOutbox(tmp_path / "n.sqlite3", "ops@vp.test")
    events = store.read(0, 100)
    assert outbox.apply(events) == 3
    assert outbox.apply(events) == 3  # a redelivery changes nothing
    due = outbox.due(now=1e12)
    assert sorted(m.recipient for m in due) == ["acme@x.test", "ops@vp.test"]
    assert {m.client_name for m in due} == {"Acme"}
    outbox.mark_sent(due[0], 1.0)
    assert len(outbox.due(now=1e12)) == 1 and outbox.sent_count() == 1
    outbox.close()


def test_a_failed_backup_and_every_drill_email_operations_only(tmp_path: Path) -> None:
    store = InMemoryEventStore()
    store.append(
        [
            ClientCreated(client_id="c1", name="Acme", email="acme@x.test", tier="free"),
            BackupFailed(client_id="c1", backup_id="b-1", reason="worker gone\r\nBcc: x@y.z"),
            BackupTaken(client_id="c1", backup_id="b-2", collections=("docs",)),
            RestoreDrillCompleted(ok=False, clients=1, backups=1, bytes=9, failures=("c1/b-2",)),
        ],
        actor="scheduler",
    )
    outbox = NotifierOutbox(tmp_path / "n.sqlite3", "ops@vp.test")
    outbox.apply(store.read(0, 100))
    due = outbox.due(now=1e12)
    assert sorted((m.recipient, m.event_type) for m in due) == [
        ("ops@vp.test", "backup.drill_completed"),
        ("ops@vp.test", "backup.failed"),
    ], "a taken backup mails nobody; the client is not mailed about operations"
    mails = {}
    for m in due:
        notice = Notice(m.event_id, m.event_type, m.client_id, m.client_name, m.data)
        msg = build_email(notice, "VectorPanda <noreply@vp.test>", m.recipient, "vp.test")
        mails[m.event_type] = message_from_bytes(msg.as_bytes(), policy=default)
    failed = mails["backup.failed"]
    assert "c1" in str(failed["Subject"]) and failed["Bcc"] is None
    assert "b-1" in failed.get_body(("plain",)).get_content()
    assert "FAILED" in str(mails["backup.drill_completed"]["Subject"])
    assert "c1/b-2" in mails["backup.drill_completed"].get_body(("plain",)).get_content()
    outbox.close()
