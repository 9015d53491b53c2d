"""Event pipeline benchmark: append -> publish -> project, and replay of 100,000 events.

    .venv/bin/python -m benchmarks.events                       # local bus
    .venv/bin/python -m benchmarks.events --amqp amqp://guest:guest@127.0.0.1:5672/

Throughput: admin-style commands append events (``--per-append`` per
transaction) while the relay publishes them and the projector folds them into
the audit tables; the figure is events per second from the first append until
the projection's checkpoint reaches the last seq. Replay: a log of
``--replay-events`` events folded into a fresh audit database.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from eventlog.amqp_bus import RabbitBus
from eventlog.bus import Bus
from eventlog.events import ApiKeyIssued, ClientCreated, Event, InvoiceIssued, TierChanged
from eventlog.local_bus import LocalBus
from eventlog.relay import OutboxRelay
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore
from projections.audit_store import AuditProjection
from projections.replay import replay_into
from projections.service import ProjectorService


def story(n: int) -> list[Event]:
    """A plausible mix: create, issue a key, change tier, invoice."""
    out: list[Event] = []
    i = 0
    while len(out) < n:
        cid = f"c{i:016x}"
        out += [
            ClientCreated(client_id=cid, name=f"Client {i}", email=f"c{i}@x.io", tier="free"),
            ApiKeyIssued(client_id=cid, key_id=f"{i:016x}", scopes=("read", "write")),
            TierChanged(client_id=cid, from_tier="free", to_tier="premium"),
            InvoiceIssued(client_id=cid, amount_cents=4900, currency="EUR", reference=f"I-{i}"),
        ]
        i += 1
    return out[:n]


async def pipeline(events: int, per_append: int, amqp: str | None, tmp: Path) -> float:
    store = SqliteEventStore(open_engine(tmp / "control.sqlite3"))
    exchange = f"vpbench.{uuid.uuid4().hex[:8]}.events"
    bus: Bus = RabbitBus(amqp, exchange=exchange) if amqp else LocalBus()
    await bus.connect()
    projection = AuditProjection.at(tmp / "audit.sqlite3")
    projector = ProjectorService(projection, store, bus, f"{exchange}.projections")
    await projector.prepare()
    relay = OutboxRelay(store, bus, poll_s=0.01)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(projector.run(stop))]
    todo = story(events)
    started = time.perf_counter()
    for i in range(0, len(todo), per_append):
        await asyncio.to_thread(store.append, todo[i : i + per_append], "admin")
        relay.wake()
    while projector.consumer.checkpoint_hint < events:  # noqa: ASYNC110 - polling is the measure
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    if isinstance(bus, RabbitBus):
        await bus.delete_queue(f"{exchange}.projections")
        await bus.delete_exchanges()
    await bus.close()
    projection.close()
    return elapsed


def replay(events: int, tmp: Path) -> float:
    store = SqliteEventStore(open_engine(tmp / "replay-control.sqlite3"))
    todo = story(events)
    for i in range(0, len(todo), 1000):
        store.append(todo[i : i + 1000], "admin")
    started = time.perf_counter()
    replay_into(store, tmp / "replayed.sqlite3")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--per-append", type=int, default=10)
    parser.add_argument("--replay-events", type=int, default=100_000)
    parser.add_argument("--amqp", default=None, help="RabbitMQ URL (default: the local bus)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp:
        elapsed = asyncio.run(pipeline(args.events, args.per_append, args.amqp, Path(tmp)))
        bus = "RabbitMQ" if args.amqp else "local bus"
        print(
            f"append->publish->project ({bus}, {args.per_append} events/append): "
            f"{args.events} events in {elapsed:.2f}s = {args.events / elapsed:,.0f} events/s"
        )
        seconds = replay(args.replay_events, Path(tmp))
        print(
            f"replay: {args.replay_events} events in {seconds:.2f}s = "
            f"{args.replay_events / seconds:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
