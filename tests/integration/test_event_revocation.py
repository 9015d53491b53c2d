"""A revoked key is refused within 1 s by every coordinator process sharing the store.

Two real ``vectorpanda coordinator`` processes share one control database and
one RabbitMQ exchange. Requests with the key keep both caches warm (and keep
refilling them) while the key is revoked through the first coordinator.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.stack import (
    amqp_url_or_skip,
    broker_cleanup,
    free_port,
    read_env_file,
    start_coordinator,
)

pytestmark = pytest.mark.integration

# Authenticated, then answered 404 without a worker: a pure key check.
PROBE = "/v1/collections/Not_A_Name"


def issue_key(admin: httpx.Client, client_id: str) -> str:
    r = admin.post(f"/admin/v1/clients/{client_id}/keys", json={"scopes": ["read"]})
    assert r.status_code == 201, r.text
    return str(r.json()["api_key"])


def refused_everywhere(ports: list[int], key: str) -> bool:
    headers = {"Authorization": f"Bearer {key}"}
    return all(
        httpx.get(f"http://127.0.0.1:{p}{PROBE}", headers=headers).status_code == 401 for p in ports
    )


def test_revoked_key_is_refused_within_a_second_on_every_coordinator(tmp_path: Path) -> None:
    url = amqp_url_or_skip()
    exchange = f"vptest.{uuid.uuid4().hex[:10]}.events"
    data = tmp_path / "vp-data"
    ports = [free_port(), free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            env = {
                "VP_AMQP_URL": url,
                "VP_AMQP_EXCHANGE": exchange,
                "VP_COORDINATOR_ID": f"rev{i}",
            }
            procs.append(start_coordinator(data, port, env))
        token = read_env_file(data / "vectorpanda.env")["VP_ADMIN_TOKEN"]
        admin = httpx.Client(
            base_url=f"http://127.0.0.1:{ports[0]}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        r = admin.post(
            "/admin/v1/clients", json={"name": "A", "email": "a@x.io", "tier": "premium"}
        )
        client_id = r.json()["client_id"]
        # Warm-up: both coordinators' eviction consumers are live once a first
        # revocation reaches the one that did not run it.
        warm = issue_key(admin, client_id)
        assert not refused_everywhere(ports, warm)
        admin.delete(f"/admin/v1/clients/{client_id}/keys/{warm[3:19]}")
        deadline = time.monotonic() + 30
        while not refused_everywhere(ports, warm):
            assert time.monotonic() < deadline, "the bus never reached the second coordinator"
            time.sleep(0.1)

        key = issue_key(admin, client_id)
        results: list[tuple[int, float, int]] = []  # (port, request start, status)
        stop = threading.Event()

        def hammer(port: int) -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
                while not stop.is_set():
                    started = time.monotonic()
                    status = http.get(f"http://127.0.0.1:{port}{PROBE}").status_code
                    results.append((port, started, status))

        threads = [threading.Thread(target=hammer, args=(p,)) for p in ports for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert {s for _, _, s in results} == {404}  # the key works, caches are warm
        revoked_at = time.monotonic()
        r = admin.delete(f"/admin/v1/clients/{client_id}/keys/{key[3:19]}")
        assert r.status_code == 204
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join()
        for port in ports:
            mine = [(t, s) for p, t, s in results if p == port and t > revoked_at]
            accepted = [t - revoked_at for t, s in mine if s != 401]
            last_ok = max(accepted, default=0.0)
            print(f"coordinator :{port}: last accepted request started {last_ok:.3f}s after revoke")
            assert last_ok < 1.0, f"coordinator :{port} still accepted the key {last_ok:.2f}s later"
            assert any(s == 401 for t, s in mine if t - revoked_at > 1.0)
            late = [s for t, s in mine if t - revoked_at > 1.0]
            assert set(late) == {401}
        admin.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except Exception:
                    os.killpg(proc.pid, signal.SIGKILL)
        queues = [f"{exchange}.{q}" for q in ("key-cache.rev0", "key-cache.rev1", "projections")]
        broker_cleanup(url, exchange, queues)
