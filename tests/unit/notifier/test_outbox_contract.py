"""One contract for the notifier's outbox: its SQLite file and the shared PostgreSQL tables.

On PostgreSQL several coordinators run a notifier on the same rows: each event is
applied once, each email claimed by one of them, each alert queued once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eventlog.consumer import CheckpointedConsumer, CheckpointGap
from eventlog.events import ClientCreated, ClientPaused, TierChanged
from eventlog.memory_store import InMemoryEventStore
from notifier.outbox import NotifierOutbox

OPS = "ops@vp.test"
Open = Callable[[], NotifierOutbox]


@pytest.fixture(params=["sqlite", "postgres"])
def open_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Open]:
    where: Path | str = tmp_path / "notifier.sqlite3"
    if request.param == "postgres":
        where = request.getfixturevalue("pg_url")
    opened: list[NotifierOutbox] = []

    def make() -> NotifierOutbox:
        opened.append(NotifierOutbox(where, OPS))
        return opened[-1]

    yield make
    for outbox in opened:
        outbox.close()


def log_of(clients: int) -> InMemoryEventStore:
    store = InMemoryEventStore()
    for n in range(clients):
        cid = f"c{n}"
        store.append(
            [
                ClientCreated(client_id=cid, name=f"N{n}", email=f"{cid}@x.test", tier="free"),
                TierChanged(client_id=cid, from_tier="free", to_tier="standard"),
                ClientPaused(client_id=cid, reason="unpaid"),
            ],
            actor="admin",
        )
    return store


def test_apply_is_idempotent_and_moves_the_checkpoint(open_outbox: Open) -> None:
    outbox = open_outbox()
    events = log_of(1).read(0, 100)
    assert outbox.checkpoint() == 0
    assert outbox.apply(events) == 3 and outbox.apply(events) == 3
    assert outbox.checkpoint() == 3
    due = outbox.due(now=1e12)
    assert sorted(m.recipient for m in due) == ["c0@x.test", OPS]
    assert {m.client_name for m in due} == {"N0"}
    with pytest.raises(CheckpointGap):
        outbox.apply(log_of(3).read(5, 100))  # seq 6 onwards after checkpoint 3


def test_sent_failed_quarantined_and_retried(open_outbox: Open) -> None:
    outbox = open_outbox()
    outbox.apply(log_of(1).read(0, 100))
    first, second = outbox.claim(now=100.0)
    outbox.mark_sent(first, 101.0)
    outbox.mark_failed(second, retry_at=500.0, error="421 try later")
    assert outbox.sent_count() == 1 and outbox.next_due() == 500.0
    assert outbox.claim(now=499.0) == []
    (again,) = outbox.claim(now=500.0)
    assert again.attempts == 1
    outbox.quarantine(again, 501.0, "permanent failure: 550")
    assert [d.recipient for d in outbox.dead()] == [second.recipient]
    assert outbox.next_due() is None
    assert outbox.retry_dead() == 1 and outbox.dead() == []
    assert [m.recipient for m in outbox.claim(now=502.0)] == [second.recipient]


def test_a_claimed_email_is_skipped_until_its_lease_runs_out(open_outbox: Open) -> None:
    a, b = open_outbox(), open_outbox()
    a.apply(log_of(1).read(0, 100))
    claimed = a.claim(now=1000.0, lease_s=300.0)
    assert len(claimed) == 2
    assert b.claim(now=1001.0) == []  # another notifier leaves them to the first
    # The first died mid-send: after the lease they are due again, for anyone.
    assert len(b.claim(now=1300.0)) == 2


def test_released_claims_are_due_at_once(open_outbox: Open) -> None:
    a, b = open_outbox(), open_outbox()
    a.apply(log_of(1).read(0, 100))
    first, second = a.claim(now=1000.0)
    a.mark_sent(first, 1000.5)
    a.release([first, second])  # a stopping notifier hands back what it did not send
    assert [m.recipient for m in b.claim(now=1001.0)] == [second.recipient]
    assert b.sent_count() == 1


def test_concurrent_notifiers_claim_each_email_once(open_outbox: Open) -> None:
    outboxes = [open_outbox() for _ in range(3)]
    outboxes[0].apply(log_of(30).read(0, 1000))  # 30 pauses, 2 recipients each
    total = len(outboxes[0].due(now=1e12, limit=1000))
    assert total == 60

    def drain(outbox: NotifierOutbox) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        while batch := outbox.claim(now=1e6, limit=7):
            got += [(m.event_id, m.recipient) for m in batch]
            for m in batch:
                outbox.mark_sent(m, 1e6)
        return got

    with ThreadPoolExecutor(3) as pool:
        claimed = [pair for part in pool.map(drain, outboxes) for pair in part]
    assert len(claimed) == len(set(claimed)) == total
    assert outboxes[1].sent_count() == total


async def test_concurrent_consumers_apply_each_event_once(open_outbox: Open) -> None:
    import asyncio

    store = log_of(40)
    outboxes = [open_outbox() for _ in range(3)]
    consumers = [CheckpointedConsumer(o, store, batch=9) for o in outboxes]
    await asyncio.gather(*(c.catch_up() for c in consumers))
    assert {o.checkpoint() for o in outboxes} == {120}
    assert len(outboxes[0].due(now=1e12, limit=1000)) == 80  # 40 pauses x 2 recipients


def test_an_alert_is_queued_once_per_key_from_any_process(open_outbox: Open) -> None:
    a, b = open_outbox(), open_outbox()
    assert a.queue_alert("disk:1", "Disk", "full") is True
    assert b.queue_alert("disk:1", "Disk", "full") is False
    (alert,) = b.due(now=1e12)
    assert alert.is_alert and alert.data == {"subject": "Disk", "text": "full"}


async def test_a_notifier_stopped_mid_send_hands_its_claims_back(open_outbox: Open) -> None:
    import asyncio

    from notifier.service import NotifierService

    class Stuck:
        def __init__(self) -> None:
            self.started = asyncio.Event()

        async def send(self, message: object) -> None:
            self.started.set()
            await asyncio.Event().wait()  # an SMTP server that never answers

    store = log_of(1)
    outbox = open_outbox()
    sender = Stuck()
    service = NotifierService(outbox, store, sender, mail_from="vp@vp.test")
    outbox.apply(store.read(0, 100))
    delivering = asyncio.create_task(service.deliver_due())
    await sender.started.wait()
    delivering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivering
    # Not leased for minutes: the next notifier (or this one restarted) sends them now.
    assert len(open_outbox().claim(now=time.time())) == 2
