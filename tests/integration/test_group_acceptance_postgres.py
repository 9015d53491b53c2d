"""Issue 16's acceptance: three coordinators against one PostgreSQL and two workers.

Real processes throughout (the ``up`` supervisor, three coordinator processes on one
port, two workers, the machine's PostgreSQL and RabbitMQ). Admin actions are sent on
fresh connections from several threads, so the kernel spreads them over the three
processes. Then: one event per acknowledged action, ``seq`` gap-free, the chain
verifies, each event reached the broker exactly once (a queue of the test's own,
bound to every event), and each was projected exactly once into the audit tables,
which live in the same PostgreSQL database. Then a key revoked through one member is
refused by all three within 1 s, with RabbitMQ up and with it cut.

``VP_TEST_GROUP_ADMIN_ACTIONS`` sets the count (default 600 here, to keep the suite's
runtime modest on a loaded 2-core machine); ``make bench`` runs the 3,000 of the issue
through ``benchmarks/coordinator_group.py``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from sqlalchemy import create_engine, text
from yarl import URL

from eventlog.amqp_bus import RabbitBus
from eventlog.bus import Delivery
from tests.integration.test_coordinator_processes import (
    _revocation_is_seen_everywhere,
    coordinators,
    once,
)
from tests.stack import Stack, TcpProxy, amqp_url_or_skip, broker_cleanup, running_stack

pytestmark = pytest.mark.integration

ACTIONS = int(os.environ.get("VP_TEST_GROUP_ADMIN_ACTIONS", "600"))
SENDERS = 8


def _events_after(stack: Stack, after: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    while True:
        r = once(
            stack,
            "GET",
            "/admin/v1/events",
            stack.admin_token,
            params={"after_seq": after, "limit": 500},
        )
        assert r.status_code == 200, r.text
        page = r.json()["events"]
        if not page:
            return out
        out += page
        after = int(page[-1]["seq"])


async def _declare_tap(url: str, exchange: str, queue: str) -> None:
    bus = RabbitBus(url, exchange=exchange)
    await bus.connect()
    await bus.declare_queue(queue, ["#"])
    await bus.close()


async def _drain_tap(
    url: str, exchange: str, queue: str, want: set[int], wait_s: float
) -> Counter[int]:
    """Every seq published to the tap (with how often), until ``want`` is covered and a
    quiet second shows no duplicate is still on its way, or ``wait_s`` has passed."""
    seen: Counter[int] = Counter()
    last = time.monotonic()

    async def handle(delivery: Delivery) -> None:
        nonlocal last
        seen[int(orjson.loads(delivery.body)["seq"])] += 1
        last = time.monotonic()

    bus = RabbitBus(url, exchange=exchange)
    await bus.connect()
    subscription = await bus.consume(queue, handle)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if want <= set(seen) and time.monotonic() - last > 1.0:
            break
        await asyncio.sleep(0.1)
    await subscription.cancel()
    await bus.close()
    return seen


def test_three_coordinators_two_workers_one_postgresql(pg_url: str, tmp_path: Path) -> None:
    amqp = amqp_url_or_skip()
    exchange = f"vp-accept-{os.getpid()}-{time.monotonic_ns()}"
    tap = f"{exchange}.tap"
    broker = URL(amqp)
    proxy = TcpProxy(broker.host or "127.0.0.1", broker.port or 5672)  # to cut it later
    env = {
        "VP_COORDINATOR_PROCESSES": "3",
        "VP_DATABASE_URL": pg_url,
        "VP_AMQP_URL": proxy.url(amqp),
        "VP_AMQP_EXCHANGE": exchange,
    }
    try:
        with running_stack(tmp_path / "vp", workers=2, **env) as stack:
            seen = coordinators(stack, 90)
            assert len(seen) == 3 and sorted(seen.values()) == [False, False, True], seen
            asyncio.run(_declare_tap(amqp, exchange, tap))
            start = max([0, *(int(str(e["seq"])) for e in _events_after(stack, 0))])

            def act(n: int) -> str:
                body = {"name": f"accept-{n}", "email": f"a{n}@example.com"}
                for _ in range(3):
                    r = once(stack, "POST", "/admin/v1/clients", stack.admin_token, json=body)
                    if r.status_code != 503:  # a busy member may shed load: retried
                        break
                assert r.status_code == 201, r.text
                return str(r.json()["client_id"])

            started = time.perf_counter()
            with ThreadPoolExecutor(SENDERS) as pool:
                made = list(pool.map(act, range(ACTIONS)))
            elapsed = time.perf_counter() - started
            print(f"{ACTIONS} admin actions through 3 coordinators in {elapsed:.1f}s")

            # One event per action, gap-free, the chain whole.
            # (The group's own duties may append meanwhile, e.g. the scheduler's jobs.)
            events = _events_after(stack, start)
            seqs = [int(str(e["seq"])) for e in events]
            assert seqs == list(range(start + 1, start + len(events) + 1))
            created = [e for e in events if e["type"] == "client.created"]
            assert sorted(str(e["client_id"]) for e in created) == sorted(made)
            others = Counter(str(e["type"]) for e in events if e["type"] != "client.created")
            assert sum(others.values()) <= 5, others
            want = set(seqs)

            # Each published once: the tap saw every seq, none twice.
            published = asyncio.run(_drain_tap(amqp, exchange, tap, want, 60))
            assert want <= set(published), sorted(want - set(published))[:10]
            assert max(published[s] for s in want) == 1, [s for s in want if published[s] > 1][:10]

            # Each projected once, into PostgreSQL: the shared checkpoint reached the head,
            # one audit row per event, and the tables equal a replay of the log.
            engine = create_engine(pg_url)
            try:
                deadline = time.monotonic() + 60
                while True:
                    with engine.connect() as conn:
                        checkpoint = conn.execute(
                            text("SELECT seq FROM checkpoints WHERE consumer = 'audit'")
                        ).scalar()
                    if checkpoint is not None and checkpoint >= seqs[-1]:
                        break
                    assert time.monotonic() < deadline, checkpoint
                    time.sleep(0.2)
                with engine.connect() as conn:
                    rows = conn.execute(
                        text(
                            "SELECT COUNT(*), COUNT(DISTINCT seq) FROM audit_log "
                            "WHERE seq > :a AND seq <= :b"
                        ),
                        {"a": start, "b": seqs[-1]},
                    ).one()
            finally:
                engine.dispose()
            assert tuple(rows) == (len(events), len(events))
            assert not (stack.data_dir / "audit.sqlite3").exists()
            r = once(stack, "GET", "/admin/v1/audit/verify", stack.admin_token)
            assert r.status_code == 200 and r.json()["ok"] is True, r.text
            assert r.json()["events"] >= seqs[-1]

            # A key revoked through one member is refused by all three within 1 s, with
            # the broker up and with every connection to it cut (the members follow the
            # event log themselves, coordinator/coherence.py).
            _revocation_is_seen_everywhere(stack)
            proxy.cut()
            _revocation_is_seen_everywhere(stack)
            proxy.restore()
    finally:
        proxy.close()
        broker_cleanup(amqp, exchange, [tap, f"{exchange}.projections", f"{exchange}.notifier"])
