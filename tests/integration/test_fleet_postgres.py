"""``vectorpanda fleet --coordinators 2 --database-url``: two coordinators on this
machine's PostgreSQL behind nginx; SIGKILL one mid-traffic and every request still gets
an answer, no acknowledged write or event is lost, the survivor takes over placement,
the relay and the projections carry on, and the killed one rejoins on restart."""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from coordinator.leader import LEADER_LOCK_KEY
from eventlog.relay_leader import RELAY_LOCK_KEY
from tests.e2e.conftest import require_nginx
from tests.fleet import Proc
from vectorpanda.fleet import port_open

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_fleet(pg_url: str, tmp_path: Path) -> Iterator[tuple[Proc, dict[str, Any], Path]]:
    require_nginx()
    data_dir = tmp_path / "fleet"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("VP_DATA_DIR", "VP_PORT", "VP_HUB_PORT", "VP_COORDINATOR_ID", "VP_DATABASE_URL"):
        env.pop(name, None)
    if port_open(5672):  # the machine's broker, on an exchange of this test's own
        env["VP_AMQP_EXCHANGE"] = f"vp-pgfleet-{secrets.token_hex(4)}"
    argv = [sys.executable, "-m", "vectorpanda", "fleet", "--data-dir", str(data_dir)]
    argv += ["--https-port", "0", "--http-port", "0", "--workers", "1"]
    argv += ["--coordinators", "2", "--database-url", pg_url]
    popen = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    proc = Proc(popen)
    proc.pump()
    try:
        proc.wait_for("fleet: ", timeout=90)
        line = next((x for x in proc.output if x.startswith("fleet: ")), None)
        # "vectorpanda fleet: <why>" when it could not start: its output and its children's
        # logs say why
        assert line is not None, "".join(proc.output) + _log_tails(data_dir / "logs" / "fleet")
        yield proc, json.loads(line.removeprefix("fleet: ")), data_dir
    finally:
        proc.stop()


def _log_tails(logs: Path, lines: int = 40) -> str:
    out = []
    for log in sorted(logs.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"\n--- {log.name}\n" + "\n".join(tail))
    return "".join(out)


def _socket_inodes(port: int) -> set[str]:
    """The inodes of this host's TCP sockets whose local port is ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found.add(fields[9])
    return found


def _lock_holder(pg_url: str, key: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the session advisory lock ``key`` (by the client port of
    the holding backend's connection), or None."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            ports = [
                int(row[0])
                for row in conn.execute(
                    text(
                        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a "
                        "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                        "AND l.classid = :hi AND l.objid = :lo AND a.client_port IS NOT NULL"
                    ),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
                )
            ]
    finally:
        engine.dispose()
    for port in ports:
        inodes = _socket_inodes(port)
        for pid in pids:
            try:
                links = {
                    os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
                }
            except OSError:
                continue
            if any(f"socket:[{inode}]" in links for inode in inodes):
                return pid
    return None


class _Sender(threading.Thread):
    """Creates clients through nginx back to back until stopped; keeps what was acknowledged."""

    def __init__(self, url: str, headers: Any, tls: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self._client = httpx.Client(base_url=url, headers=headers, verify=tls, timeout=30)
        self._halt = threading.Event()
        self.acknowledged: list[str] = []
        self.refused: list[int] = []

    def run(self) -> None:
        n = 0
        while not self._halt.is_set():
            n += 1
            body = {"name": f"bg{n}", "email": f"bg{n}@x.test"}
            try:
                r = self._client.post("/admin/v1/clients", json=body)
            except httpx.TransportError:
                self.refused.append(-1)  # no answer: not acknowledged
                continue
            if r.status_code == 201:
                self.acknowledged.append(str(r.json()["client_id"]))
            else:
                self.refused.append(r.status_code)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self._client.close()


def _leads(client: httpx.Client) -> bool:
    """Whether the coordinator behind ``client`` is the one that places tenants."""
    r = client.get("/admin/v1/workers")
    assert r.status_code == 200, r.text
    return bool(r.json()["coordinator"]["leads_placement"])


def test_two_coordinators_share_postgresql_and_survive_a_sigkill(
    pg_fleet: tuple[Proc, dict[str, Any], Path], pg_url: str
) -> None:
    proc, info, data_dir = pg_fleet
    assert info["control_database"] == "postgresql" and len(info["api_urls"]) == 2
    assert not (data_dir / "control.sqlite3").exists()
    assert pg_url not in "".join(proc.output)  # never echoed (it could carry a password)
    token = next(
        line.split("=", 1)[1].strip()
        for line in (data_dir / "vectorpanda.env").read_text().splitlines()
        if line.startswith("VP_ADMIN_TOKEN=")
    )
    tls = ssl.create_default_context(cafile=str(Path(info["runtime_dir"]) / "tls.crt"))
    https = httpx.Client(
        base_url=info["https_url"],
        headers={"Authorization": f"Bearer {token}"},
        verify=tls,
        timeout=30,
    )
    direct = [httpx.Client(base_url=u, headers=https.headers, timeout=30) for u in info["api_urls"]]

    def create(n: int) -> str:
        r = https.post("/admin/v1/clients", json={"name": f"c{n}", "email": f"c{n}@x.test"})
        assert r.status_code == 201, r.text
        return str(r.json()["client_id"])

    made = [create(n) for n in range(10)]
    # Each coordinator sees what the other wrote: one control database.
    for client in direct:
        for cid in made:
            assert client.get(f"/admin/v1/clients/{cid}").status_code == 200
    # One of them places tenants; the other routes by what the workers hold.
    assert sorted(_leads(c) for c in direct) == [False, True]
    scopes = {"scopes": ["read", "write", "manage"]}
    key = https.post(f"/admin/v1/clients/{made[0]}/keys", json=scopes)
    assert key.status_code == 201, key.text
    data = {"Authorization": f"Bearer {key.json()['api_key']}"}
    for n, client in enumerate(direct):  # the data plane through each, one owner
        r = client.post("/v1/collections", json={"name": f"d{n}", "dimension": 2}, headers=data)
        assert r.status_code == 201, r.text
        body = {"vectors": [{"id": "a", "values": [1.0, 0.0]}]}
        r = client.post(f"/v1/collections/d{n}/upsert", json=body, headers=data)
        assert r.status_code == 200, r.text
    for client in direct:
        for n in range(len(direct)):
            r = client.post(f"/v1/collections/d{n}/fetch", json={"ids": ["a"]}, headers=data)
            assert r.status_code == 200 and list(r.json()["vectors"]) == ["a"], r.text

    # Traffic in flight when the coordinator dies: a second sender writes all along.
    background = _Sender(info["https_url"], https.headers, tls)
    background.start()
    time.sleep(1.0)
    # The victim is the leader: it holds the placement lock and runs the duties (the
    # outbox relay among them, under the relay's own lock).
    names = ["coordinator-1", "coordinator-2"]
    pids = [info["pids"][name] for name in names]
    leader = _lock_holder(pg_url, LEADER_LOCK_KEY, pids)
    assert leader in pids, (leader, pids)
    assert _lock_holder(pg_url, RELAY_LOCK_KEY, pids) in (leader, None)
    victim = pids.index(leader)
    survivor = 1 - victim
    os.kill(leader, signal.SIGKILL)
    refused_posts, reads = 0, []
    for n in range(10, 40):  # writes and reads through nginx while one coordinator is dead
        for _ in range(3):
            r = https.post("/admin/v1/clients", json={"name": f"c{n}", "email": f"c{n}@x.test"})
            if r.status_code != 503:
                break
            # A POST nginx had written to a kept-alive connection of the dead coordinator:
            # it may not be replayed (not idempotent), so the client is told to retry.
            refused_posts += 1
        assert r.status_code == 201, r.text
        made.append(str(r.json()["client_id"]))
        reads.append(https.get(f"/admin/v1/clients/{made[-1]}").status_code)
        reads.append(https.get("/admin/v1/clients").status_code)
    background.stop()
    assert reads == [200] * 60  # reads are passed on to the live coordinator, never lost
    assert len(background.acknowledged) >= 10, background.refused
    made += background.acknowledged
    assert refused_posts <= 4  # at most the connections nginx kept open to the dead one
    deadline = time.monotonic() + 10
    while not _leads(direct[survivor]) and time.monotonic() < deadline:  # placement taken over
        time.sleep(0.2)
    assert _leads(direct[survivor])

    proc.wait_for(f"{names[victim]} exited", timeout=30)  # the fleet starts a new one
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if direct[victim].get("/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert direct[victim].get(f"/admin/v1/clients/{made[-1]}").status_code == 200  # rejoined

    report = https.get("/admin/v1/audit/verify").json()
    events: list[dict[str, Any]] = []
    while page := https.get(
        "/admin/v1/events", params={"after_seq": len(events), "limit": 1000}
    ).json()["events"]:
        events += page
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 40  # gap-free
    assert report["ok"] is True, report
    # No acknowledged write lost, none recorded twice: one creation event per client.
    created = Counter(e["client_id"] for e in events if e["type"] == "client.created")
    assert set(made) <= set(created) and max(created.values()) == 1
    for cid in background.acknowledged:
        assert https.get(f"/admin/v1/clients/{cid}").status_code == 200
    # The relay and the projector carried on without the dead one: the outbox drains
    # (a row leaves it only once the bus confirmed it) and the shared audit checkpoint
    # reaches the head.
    engine = create_engine(pg_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                pending = conn.execute(text("SELECT COUNT(*) FROM outbox")).scalar()
                projected = conn.execute(
                    text("SELECT seq FROM checkpoints WHERE consumer = 'audit'")
                ).scalar()
            if pending == 0 and projected is not None and projected >= seqs[-1]:
                break
            assert time.monotonic() < deadline, (pending, projected, seqs[-1])
            time.sleep(0.2)
    finally:
        engine.dispose()
    # The survivor took the duties over: both locks are its own now.
    assert _lock_holder(pg_url, LEADER_LOCK_KEY, [pids[survivor]]) == pids[survivor]
    assert _lock_holder(pg_url, RELAY_LOCK_KEY, [pids[survivor]]) == pids[survivor]
    for client in (https, *direct):
        client.close()
