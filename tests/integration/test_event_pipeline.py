"""1,000 admin actions through the API: in the store, on RabbitMQ and in the audit tables."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from eventlog.amqp_bus import RabbitBus
from eventlog.bus import decode_message
from tests.stack import (
    amqp_url_or_skip,
    broker_cleanup,
    census_cron_away_from_now,
    running_stack,
)

pytestmark = pytest.mark.integration

ACTIONS = 1000


def audit_seqs(db: Path) -> list[int]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("select seq from audit_log order by seq")]
        except sqlite3.OperationalError:
            return []


def wait_for(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


async def declare_tap(url: str, exchange: str, queue: str) -> None:
    bus = RabbitBus(url, exchange=exchange)
    await bus.connect()
    await bus.declare_queue(queue, ["#"])
    await bus.close()


async def drain_tap(url: str, exchange: str, queue: str, expected: int) -> list[int]:
    bus = RabbitBus(url, exchange=exchange)
    await bus.connect()
    seen: list[int] = []

    async def take(delivery) -> None:
        seen.append(decode_message(delivery.body).seq)

    sub = await bus.consume(queue, take, prefetch=500)
    deadline = time.monotonic() + 30
    while len(seen) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # anything beyond the expected count would be a duplicate
    await sub.cancel()
    await bus.close()
    return seen


def admin_actions(admin: httpx.Client, count: int) -> None:
    """A mix of every admin action that has a route: ``count`` events in all."""
    done = 0
    while done < count:
        r = admin.post("/admin/v1/clients", json={"name": f"C{done}", "email": f"c{done}@x.io"})
        assert r.status_code == 201, r.text
        base = f"/admin/v1/clients/{r.json()['client_id']}"
        done += 1
        bill = {
            "kind": "invoice_issued",
            "amount_cents": done,
            "currency": "EUR",
            "reference": "I",
            "reason": "monthly",
        }
        for path, body in (
            ("/keys", {"scopes": ["read"]}),
            ("/tier", {"tier": "premium", "reason": "upgrade"}),  # free -> premium: one event
            ("/billing", bill),
        ):
            if done >= count:
                break
            r = admin.post(base + path, json=body)
            assert r.status_code in (200, 201), r.text
            done += 1


def test_thousand_admin_actions_reach_store_broker_and_audit(tmp_path: Path) -> None:
    url = amqp_url_or_skip()
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    tap = f"{exchange}.tap"
    queues = [tap, f"{exchange}.projections", f"{exchange}.key-cache.pipe1"]
    data = tmp_path / "vp-data"
    try:
        asyncio.run(declare_tap(url, exchange, tap))
        env = {
            "VP_AMQP_URL": url,
            "VP_AMQP_EXCHANGE": exchange,
            "VP_COORDINATOR_ID": "pipe1",
            # The daily census fires 12 h from now, not at 00:05 UTC in mid-test.
            "VP_CENSUS_CRON": census_cron_away_from_now(),
        }
        with running_stack(data, workers=0, **env) as stack, stack.admin() as admin:
            # The census due on start is seq 1 and no other census comes (nor any event of
            # the hourly job: these clients are new and owe nothing), so the count is exact.
            stack.wait_for_startup_census()
            started = time.monotonic()
            # Four admins at once: the log serialises them, the test waits less.
            with ThreadPoolExecutor(4) as pool:
                clients = [stack.admin() for _ in range(4)]
                list(pool.map(lambda c: admin_actions(c, ACTIONS // 4), clients))
                for c in clients:
                    c.close()
            head = admin.get("/admin/v1/events", params={"after_seq": 0, "limit": 1000})
            events = head.json()["events"]
            while len(events) % 1000 == 0 and events:
                more = admin.get(
                    "/admin/v1/events", params={"after_seq": events[-1]["seq"], "limit": 1000}
                ).json()["events"]
                if not more:
                    break
                events += more
            total = len(events)
            assert total == ACTIONS + 1  # the startup census and the actions
            assert [e["seq"] for e in events] == list(range(1, total + 1))
            wait_for(lambda: audit_seqs(data / "audit.sqlite3") == list(range(1, total + 1)))
            print(
                f"{total} events through API -> store -> RabbitMQ -> audit in "
                f"{time.monotonic() - started:.1f}s"
            )
            verify = admin.get("/admin/v1/audit/verify").json()
            assert verify["ok"] is True and verify["events"] == total, verify
        on_broker = asyncio.run(drain_tap(url, exchange, tap, total))
        assert on_broker == list(range(1, total + 1))  # in order, none twice
        cli = subprocess.run(
            [sys.executable, "-m", "vectorpanda", "audit", "verify", "--data-dir", str(data)],
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert '"ok": true' in cli.stdout
    finally:
        broker_cleanup(url, exchange, queues)
