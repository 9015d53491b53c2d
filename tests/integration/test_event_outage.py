"""Broker outage: the link to RabbitMQ is cut mid-publish while admin actions go on.

Every action still succeeds (the event store is the record) and, once the
link is back, the projections catch up with nothing lost and nothing twice.
The cut lasts ``VP_TEST_OUTAGE_S`` seconds (default 8: several reconnect
attempts of the robust connection and relay retries; the issue's 30 s is
``VP_TEST_OUTAGE_S=30``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from yarl import URL

from tests.stack import (
    TcpProxy,
    amqp_url_or_skip,
    broker_cleanup,
    census_cron_away_from_now,
    running_stack,
)

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("VP_TEST_OUTAGE_S", "8"))


def audit_seqs(db: Path) -> list[int]:
    try:
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute("select seq from audit_log order by seq")]
    except sqlite3.OperationalError:
        return []


def store_seqs(db: Path) -> tuple[list[int], int]:
    """Every stored seq, and how many of them are the test's ``client.created``.

    The scheduler inside ``up`` appends events of its own (the census it takes
    on a fresh data dir), whenever it gets to it, so the store, not the count
    of admin calls, says which seqs the projections must hold.
    """
    with sqlite3.connect(db) as conn:
        seqs = [r[0] for r in conn.execute("select seq from events order by seq")]
        created = conn.execute("select count(*) from events where type = 'client.created'")
        return seqs, int(created.fetchone()[0])


def outbox_size(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from outbox").fetchone()[0])


def test_projections_catch_up_after_the_broker_link_is_cut(tmp_path: Path) -> None:
    url = amqp_url_or_skip()
    target = URL(url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5672)
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    data = tmp_path / "vp-data"
    env = {
        "VP_AMQP_URL": proxy.url(url),
        "VP_AMQP_EXCHANGE": exchange,
        "VP_COORDINATOR_ID": "outage1",
        # No scheduled census (00:05 UTC by default) between the last reads below.
        "VP_CENSUS_CRON": census_cron_away_from_now(),
    }
    statuses: list[int] = []
    stop = threading.Event()
    try:
        with running_stack(data, workers=0, **env) as stack:

            def act() -> None:
                with stack.admin() as admin:
                    n = 0
                    while not stop.is_set():
                        n += 1
                        r = admin.post(
                            "/admin/v1/clients", json={"name": f"C{n}", "email": f"c{n}@x.io"}
                        )
                        statuses.append(r.status_code)

            # Connected and consuming before the first action.
            deadline = time.monotonic() + 30
            while not (data / "audit.sqlite3").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            actor = threading.Thread(target=act)
            actor.start()
            while len(statuses) < 100:
                time.sleep(0.01)
            proxy.cut()  # mid-stream: the relay is publishing as actions commit
            during_start = len(statuses)
            time.sleep(OUTAGE_S)
            during = len(statuses) - during_start
            pending_in_outage = outbox_size(data / "control.sqlite3")
            proxy.restore()
            time.sleep(2)
            stop.set()
            actor.join()
            total = len(statuses)
            assert set(statuses) == {201}, "every admin action succeeds during the outage"
            assert during > 20 and pending_in_outage > 0
            stored, created = store_seqs(data / "control.sqlite3")
            assert created == total, "one event per acknowledged admin action"
            assert stored == list(range(1, len(stored) + 1))
            deadline = time.monotonic() + 60
            while audit_seqs(data / "audit.sqlite3") != stored:
                assert time.monotonic() < deadline, (
                    f"projections did not catch up: {len(audit_seqs(data / 'audit.sqlite3'))}"
                    f"/{len(stored)}\n" + "".join(stack.output[-30:])
                )
                time.sleep(0.2)
                stored = store_seqs(data / "control.sqlite3")[0]
            while outbox_size(data / "control.sqlite3") != 0:
                assert time.monotonic() < deadline, "outbox not drained:\n" + "".join(
                    stack.output[-40:]
                )
                time.sleep(0.2)
            with stack.admin() as admin:
                verify = admin.get("/admin/v1/audit/verify").json()
            assert verify["ok"] is True
            assert verify["events"] == len(store_seqs(data / "control.sqlite3")[0])
    finally:
        stop.set()
        proxy.close()
        broker_cleanup(url, exchange, [f"{exchange}.projections", f"{exchange}.key-cache.outage1"])
