"""The daily operations email with the signed chain head (VP_ANCHOR_EMAIL).

Real files: the control database (Accounts), the census archive, the anchors
directory and the notifier's outbox (SQLite), wired the way ``bootstrap`` wires
them from settings read out of an env file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from coordinator.accounts import Accounts, CreateClient
from coordinator.census import CensusTaker
from eventlog.anchors import HeadAnchorer, check_anchors, signing_key
from eventlog.scan import snapshot_cursor
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from notifier.outbox import NotifierOutbox
from vectorpanda.server.events import anchor_email
from vectorpanda.settings import load_settings

SECRET = "anchor-email-secret"


async def test_each_census_emails_its_signed_head_to_operations_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = data / "vectorpanda.env"
    env.write_text(
        f"VP_ANCHOR_SIGNING_KEY={SECRET}\nVP_ANCHOR_EMAIL=1\nVP_OPS_EMAIL=ops@example.test\n"
    )
    env.chmod(0o600)
    settings = load_settings(data)
    assert settings.anchor_email and settings.anchor_signing_key is not None
    accounts = Accounts(settings.control_db, b"p" * 32)
    await accounts.handle(CreateClient(name="a", email="a@example.test"))
    census = CensusTaker(
        accounts,
        settings.archive,
        anchorer=HeadAnchorer(SECRET, settings.anchors_dir),
        on_anchor=anchor_email(settings),
    )
    try:
        _, taken = await census.take("2027-03-05", "scheduler")
        assert taken
        _, again = await census.take("2027-03-05", "scheduler")  # the same day: no new census
        assert not again
        await census.take("2027-03-06", "scheduler")
    finally:
        await accounts.close()
    outbox = NotifierOutbox(settings.notifier_db, settings.ops_email)
    try:
        mails = outbox.due(time.time() + 1)
    finally:
        outbox.close()
    assert [m.recipient for m in mails] == ["ops@example.test"] * 2  # one per day
    assert all(m.is_alert for m in mails)
    first = mails[0].data
    assert "signed event-log head" in str(first["subject"])
    assert "census-2027-03-05" in str(first["subject"])
    # The JSON in the email, saved as a file, is an anchor `audit verify --anchors` accepts.
    text = str(first["text"])
    anchor = json.loads(text[text.index("{") :])
    saved = tmp_path / "from-the-mailbox"
    saved.mkdir()
    (saved / "census-2027-03-05.json").write_text(json.dumps(anchor))
    store = SqliteEventStore(open_engine(settings.control_db))
    with snapshot_cursor(store.engine) as cursor:
        report = check_anchors(cursor, saved, signing_key(SECRET).public_key())
    assert report.checked == 1 and not report.mismatches
    assert report.last_anchored_seq == anchor["seq"] and anchor["source"] == "census-2027-03-05"


async def test_without_the_setting_no_anchor_email_is_queued(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    settings = load_settings(data, anchor_signing_key=SECRET)
    assert not settings.anchor_email  # opt-in
    accounts = Accounts(settings.control_db, b"p" * 32)
    census = CensusTaker(
        accounts, settings.archive, anchorer=HeadAnchorer(SECRET, settings.anchors_dir)
    )
    try:
        assert (await census.take("2027-03-05", "scheduler"))[1]
    finally:
        await accounts.close()
    outbox = NotifierOutbox(settings.notifier_db, settings.ops_email)
    try:
        assert outbox.due(time.time() + 1) == []
    finally:
        outbox.close()
    assert len(list(settings.anchors_dir.glob("*.json"))) == 1  # the anchor itself is filed
