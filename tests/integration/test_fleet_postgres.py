"""``vectorpanda fleet --coordinators 2 --database-url``: two coordinators on this
machine's PostgreSQL behind nginx; SIGKILL one and every request still gets an answer."""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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
        line = next(x for x in proc.output if x.startswith("fleet: "))
        yield proc, json.loads(line.removeprefix("fleet: ")), data_dir
    finally:
        proc.stop()


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

    first = info["pids"]["coordinator-1"]
    os.kill(first, signal.SIGKILL)
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
    assert reads == [200] * 60  # reads are passed on to the live coordinator, never lost
    assert refused_posts <= 4  # at most the connections nginx kept open to the dead one
    deadline = time.monotonic() + 10
    while not _leads(direct[1]) and time.monotonic() < deadline:  # placement taken over
        time.sleep(0.2)
    assert _leads(direct[1])

    proc.wait_for("coordinator-1 exited", timeout=30)  # the fleet starts a new one
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if direct[0].get("/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert direct[0].get(f"/admin/v1/clients/{made[-1]}").status_code == 200  # rejoined

    report = https.get("/admin/v1/audit/verify").json()
    events = https.get("/admin/v1/events", params={"limit": 1000}).json()
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 40  # gap-free
    assert report["ok"] is True, report
    for client in (https, *direct):
        client.close()
