"""A worker store crossing its free-space floor: one event per crossing, one email to ops."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.accounts import Accounts
from coordinator.hub import WorkerHub, WorkerLink
from coordinator.storage_watch import StorageWatch
from notifier.messages import Notice, build_email
from notifier.outbox import NotifierOutbox

PEPPER = b"storage-pepper-0123456789abcdef"


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[Accounts]:
    accounts = Accounts(tmp_path / "control.sqlite3", PEPPER, cache_size=10)
    yield accounts
    await accounts.close()


def with_space(link: WorkerLink, free: int) -> None:
    link.space = {"hot": {"free_bytes": free, "total_bytes": 1000, "min_free_bytes": 100}}


async def test_each_crossing_is_recorded_once_and_emailed_to_operations(
    accounts: Accounts, tmp_path: Path
) -> None:
    hub = WorkerHub("secret")
    link = WorkerLink("w1", 4242, None)  # type: ignore[arg-type]
    hub.links["w1"] = link
    watch = StorageWatch(hub, accounts)

    with_space(link, 500)
    assert await watch.check_once() == []
    with_space(link, 50)
    assert await watch.check_once() == [("w1", "hot")]
    with_space(link, 40)
    assert await watch.check_once() == []  # still short: no second email
    with_space(link, 150)
    assert await watch.check_once() == []
    with_space(link, 60)
    assert await watch.check_once() == [("w1", "hot")]

    events = await accounts.uow.read(lambda tx: tx.events.read(0, 100, None, "worker.storage_low"))
    assert [e.data["free_bytes"] for e in events] == [50, 60]

    outbox = NotifierOutbox(tmp_path / "notifier.sqlite3", "ops@example.com")
    try:
        outbox.apply(await accounts.uow.read(lambda tx: tx.events.read(0, 100)))
        due = outbox.due(time.time() + 1)
        assert [(m.recipient, m.event_type) for m in due] == [
            ("ops@example.com", "worker.storage_low"),
            ("ops@example.com", "worker.storage_low"),
        ]
        mail = due[0]
        notice = Notice(mail.event_id, mail.event_type, mail.client_id, mail.client_name, mail.data)
        message = build_email(notice, "vp@example.com", mail.recipient, "example.com")
        assert message["Subject"] == "VectorPanda worker w1: hot store short of space"
        body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "50 bytes free" in body and "507" in body and "without a restart" in body
    finally:
        outbox.close()
