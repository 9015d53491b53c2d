"""Relay killed between the broker's confirm and marking the row: published again, applied once."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from eventlog.amqp_bus import RabbitBus
from eventlog.bus import decode_message
from eventlog.events import ClientCreated
from eventlog.relay import OutboxRelay
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditProjection
from projections.service import ProjectorService
from tests.stack import amqp_url_or_skip, broker_cleanup

pytestmark = pytest.mark.integration

# Publishes the outbox, and dies the moment the broker confirms seq 3.
KILLED_RELAY = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from eventlog.amqp_bus import RabbitBus
    from eventlog.relay import OutboxRelay
    from eventlog.sqlite import open_engine
    from eventlog.store import SqliteEventStore

    url, exchange, db = sys.argv[1:4]

    class DiesAfterConfirm(RabbitBus):
        async def publish(self, stored):
            await super().publish(stored)
            if stored.seq == 3:
                os._exit(9)  # confirmed by the broker, not yet marked in the outbox

    async def main():
        bus = DiesAfterConfirm(url, exchange=exchange)
        await bus.connect()
        relay = OutboxRelay(SqliteEventStore(open_engine(Path(db))), bus, window=1)
        await relay.publish_pending()

    asyncio.run(main())
    """
)


def test_relay_killed_after_confirm_republishes_and_audit_has_one_row(tmp_path: Path) -> None:
    url = amqp_url_or_skip()
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    tap, projections = f"{exchange}.tap", f"{exchange}.projections"
    db = tmp_path / "control.sqlite3"
    store = SqliteEventStore(open_engine(db))
    store.append(
        [
            ClientCreated(client_id=f"c{n}", name=f"C{n}", email=f"c{n}@x.io", tier="free")
            for n in range(5)
        ],
        "admin",
    )

    async def scenario() -> tuple[list[int], list[int]]:
        bus = RabbitBus(url, exchange=exchange)
        await bus.connect()
        await bus.declare_queue(tap, ["#"])
        projection = AuditProjection.at(tmp_path / "audit.sqlite3")
        projector = ProjectorService(projection, store, bus, projections)
        await projector.prepare()
        killed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED_RELAY, url, exchange, str(db)
        )
        assert await killed.wait() == 9
        pending = [e.seq for e in store.pending_outbox()]
        assert pending[:1] == [3], pending  # seq 3 was confirmed but is still pending
        await OutboxRelay(store, bus).publish_pending()  # the restarted relay
        assert store.pending_outbox() == []
        stop = asyncio.Event()
        running = asyncio.create_task(projector.run(stop))
        seen: list[int] = []

        async def take(delivery) -> None:
            seen.append(decode_message(delivery.body).seq)

        sub = await bus.consume(tap, take)
        for _ in range(200):
            if projection.checkpoint() == 5 and len(seen) >= 6:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        await running
        await sub.cancel()
        await bus.close()
        with sqlite3.connect(tmp_path / "audit.sqlite3") as conn:
            rows = [r[0] for r in conn.execute("select seq from audit_log order by seq")]
        return seen, rows

    try:
        on_broker, audit_rows = asyncio.run(scenario())
    finally:
        broker_cleanup(url, exchange, [tap, projections])
    assert on_broker.count(3) == 2  # published before the kill and again after restart
    assert sorted(set(on_broker)) == [1, 2, 3, 4, 5]
    assert audit_rows == [1, 2, 3, 4, 5]  # exactly one row each
