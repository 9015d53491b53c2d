"""Projector killed before and after its commit: each event applied once; poison to the DLQ."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from eventlog.amqp_bus import RabbitBus
from eventlog.events import ClientCreated
from eventlog.relay import OutboxRelay
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditProjection
from projections.service import ProjectorService
from tests.stack import amqp_url_or_skip, broker_cleanup

pytestmark = pytest.mark.integration

# A projector process that dies on seq 3: before its commit, or after it (before the ack).
KILLED_PROJECTOR = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from eventlog.amqp_bus import RabbitBus
    from eventlog.consumer import CheckpointedConsumer
    from eventlog.sqlite import open_engine
    from eventlog.store import SqliteEventStore
    from projections.audit_store import AuditProjection

    url, exchange, queue, db, audit, when = sys.argv[1:7]

    class Dies(AuditProjection):
        def apply(self, events):
            if when == "before" and any(e.seq == 3 for e in events):
                os._exit(9)
            cp = super().apply(events)
            if when == "after" and cp >= 3:
                os._exit(9)
            return cp

    async def main():
        bus = RabbitBus(url, exchange=exchange)
        await bus.connect()
        consumer = CheckpointedConsumer(
            Dies(open_engine(Path(audit))), SqliteEventStore(open_engine(Path(db))), batch=1
        )
        await bus.consume(queue, consumer.handle, prefetch=1)
        await asyncio.sleep(60)

    asyncio.run(main())
    """
)


def audit_rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("select seq from audit_log order by seq")]


@pytest.mark.parametrize("when", ["before", "after"])
def test_projector_killed_around_its_commit_applies_each_event_once(
    tmp_path: Path, when: str
) -> None:
    url = amqp_url_or_skip()
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    queue = f"{exchange}.projections"
    db, audit = tmp_path / "control.sqlite3", tmp_path / "audit.sqlite3"
    store = SqliteEventStore(open_engine(db))
    for n in range(6):
        store.append(
            [ClientCreated(client_id=f"c{n}", name=f"C{n}", email=f"c{n}@x.io", tier="free")],
            "admin",
        )

    async def scenario() -> tuple[int, list[bytes]]:
        bus = RabbitBus(url, exchange=exchange, delivery_limit=5)
        await bus.connect()
        projection = AuditProjection.at(audit)
        projector = ProjectorService(projection, store, bus, queue)
        await projector.prepare()
        await OutboxRelay(store, bus).publish_pending()
        killed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED_PROJECTOR, url, exchange, queue, str(db), str(audit), when
        )
        assert await asyncio.wait_for(killed.wait(), 30) == 9
        assert projection.checkpoint() == (2 if when == "before" else 3)
        # Poison arrives between real events; the restarted projector must go on.
        await bus.publish_raw("client.created", b"{not an event")
        store.append(
            [ClientCreated(client_id="c9", name="C9", email="c9@x.io", tier="free")], "admin"
        )
        await OutboxRelay(store, bus).publish_pending()
        # Restart without the start-up catch-up: only the broker's redelivery can help.
        sub = await bus.consume(queue, projector.consumer.handle)
        for _ in range(200):
            if projection.checkpoint() == 7:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await sub.cancel()
        letters = await bus.dead_letters(queue)
        await bus.close()
        return projection.checkpoint(), letters

    try:
        checkpoint, letters = asyncio.run(scenario())
    finally:
        broker_cleanup(url, exchange, [queue])
    assert checkpoint == 7
    assert audit_rows(audit) == [1, 2, 3, 4, 5, 6, 7]
    assert letters == [b"{not an event"]
