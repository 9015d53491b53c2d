"""``vectorpanda up`` with two coordinator processes sharing the port (issues 16, 19).

Real processes throughout: the ``up`` supervisor, two coordinator processes bound to
one port with SO_REUSEPORT, two workers dialled into both. Every request here opens a
connection of its own, so the kernel spreads them over both processes; the admin
workers view says which process answered (its pid, and whether it leads placement).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import (
    Stack,
    amqp_url_or_skip,
    broker_cleanup,
    on_new_connection,
    running_stack,
)

pytestmark = pytest.mark.integration

PROCESSES = "2"


def once(stack: Stack, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
    """One request on a fresh connection (so on either coordinator process)."""
    headers = {"Authorization": f"Bearer {key}"}
    return on_new_connection(method, f"{stack.url}{path}", headers=headers, **kw)


def coordinator(stack: Stack) -> dict[str, Any]:
    r = once(stack, "GET", "/admin/v1/workers", stack.admin_token)
    assert r.status_code == 200, r.text
    return dict(r.json()["coordinator"])


def coordinators(stack: Stack, tries: int = 60) -> dict[int, bool]:
    """pid -> leads placement, of the coordinator processes seen over fresh connections."""
    seen: dict[int, bool] = {}
    for _ in range(tries):
        c = coordinator(stack)
        seen[int(c["pid"])] = bool(c["leads_placement"])
    return seen


def new_client(stack: Stack, name: str, tier: str = "standard") -> tuple[str, str]:
    """(client id, API key) of a new client, made through whichever process answers."""
    admin = stack.admin_token
    body = {"name": name, "email": f"{name}@example.com", "tier": tier}
    r = once(stack, "POST", "/admin/v1/clients", admin, json=body)
    assert r.status_code == 201, r.text
    client_id = r.json()["client_id"]
    scopes = {"scopes": ["read", "write", "manage"]}
    r = once(stack, "POST", f"/admin/v1/clients/{client_id}/keys", admin, json=scopes)
    assert r.status_code == 201, r.text
    return client_id, str(r.json()["api_key"])


def make_collection(stack: Stack, key: str, name: str = "c") -> None:
    spec = {"name": name, "dimension": 4, "metric": "cosine"}
    r = once(stack, "POST", "/v1/collections", key, json=spec)
    assert r.status_code == 201, r.text


def upsert(stack: Stack, key: str, ids: list[str], name: str = "c") -> httpx.Response:
    rows = [{"id": i, "values": [1.0, float(len(i)), 0.5, 0.25]} for i in ids]
    return once(stack, "POST", f"/v1/collections/{name}/upsert", key, json={"vectors": rows})


def fetch_ids(stack: Stack, key: str, ids: list[str], name: str = "c") -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 100):
        r = once(
            stack,
            "POST",
            f"/v1/collections/{name}/fetch",
            key,
            json={"ids": ids[start : start + 100]},
        )
        assert r.status_code == 200, r.text
        found |= set(r.json()["vectors"])
    return found


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("vp-group")
    with running_stack(data, VP_COORDINATOR_PROCESSES=PROCESSES) as stack:
        yield stack


def test_both_processes_serve_the_data_plane_and_the_admin_api(group: Stack) -> None:
    seen = coordinators(group)
    assert len(seen) == 2, seen
    assert sorted(seen.values()) == [False, True], "exactly one process leads placement"
    _, key = new_client(group, "either")
    make_collection(group, key)
    ids = [f"v{n}" for n in range(60)]
    for n in range(0, 60, 3):  # 20 writes, each on its own connection
        r = upsert(group, key, ids[n : n + 3])
        assert r.status_code == 200, r.text
    assert fetch_ids(group, key, ids) == set(ids)
    for _ in range(20):
        q = {"vector": [1.0, 2.0, 0.5, 0.25], "top_k": 5}
        r = once(group, "POST", "/v1/collections/c/query", key, json=q)
        assert r.status_code == 200, r.text
        assert len(r.json()["matches"]) == 5
    # one owner, whichever process asked first: the workers view agrees in both processes
    for _ in range(10):
        r = once(group, "GET", "/admin/v1/workers", group.admin_token)
        holders = [w["worker_id"] for w in r.json()["workers"] if w["tenants"]]
        assert len(holders) == 1, r.json()


def test_a_clients_rate_limit_holds_across_processes(group: Stack) -> None:
    _, key = new_client(group, "limited", tier="free")  # 25 requests/s, burst 50
    make_collection(group, key, "r")
    time.sleep(2.5)  # the bucket refills to its burst
    query = {"vector": [1, 0, 0, 0]}

    def ask(_: int) -> int:
        return once(group, "POST", "/v1/collections/r/query", key, json=query).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:  # 16 connections at a time, over both processes
        statuses = list(pool.map(ask, range(300)))
    elapsed = time.monotonic() - started
    allowed = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    # one bucket for the client, whichever process answered: burst + refill, not twice that
    assert allowed <= 50 + 25 * elapsed + 2, (allowed, elapsed)
    assert statuses.count(429) > 0


def _revocation_is_seen_everywhere(stack: Stack) -> None:
    client_id, key = new_client(stack, f"revoked-{time.monotonic_ns()}")
    for _ in range(30):  # both processes have the key in their cache
        assert once(stack, "GET", "/v1/collections", key).status_code == 200
    key_id = key.split("_")[1]
    r = once(stack, "DELETE", f"/admin/v1/clients/{client_id}/keys/{key_id}", stack.admin_token)
    assert r.status_code == 204, r.text
    time.sleep(1.0)
    statuses = [once(stack, "GET", "/v1/collections", key).status_code for _ in range(30)]
    assert set(statuses) == {401}, statuses


def test_a_revoked_key_is_refused_by_every_process_within_a_second(group: Stack) -> None:
    _revocation_is_seen_everywhere(group)


def test_revocation_reaches_every_process_with_rabbitmq(tmp_path: Path) -> None:
    url = amqp_url_or_skip()
    exchange = f"vp-group-{os.getpid()}-{time.monotonic_ns()}"
    env = {"VP_COORDINATOR_PROCESSES": PROCESSES, "VP_AMQP_URL": url, "VP_AMQP_EXCHANGE": exchange}
    try:
        with running_stack(tmp_path / "data", **env) as stack:
            _revocation_is_seen_everywhere(stack)
    finally:
        broker_cleanup(url, exchange, [])


def _writes_while(stack: Stack, key: str, act: Any, prefix: str) -> tuple[list[str], list[int]]:
    """Upsert one id per request on fresh connections, calling ``act`` midway."""
    acknowledged: list[str] = []
    refused: list[int] = []
    for n in range(160):
        if n == 40:
            act()
        vid = f"{prefix}{n}"
        try:
            r = upsert(stack, key, [vid])
        except httpx.TransportError:
            refused.append(-1)  # the connection died with the process: not acknowledged
            continue
        if r.status_code == 200:
            acknowledged.append(vid)
        else:
            refused.append(r.status_code)
        time.sleep(0.03)
    return acknowledged, refused


def test_kill_9_of_a_follower_loses_nothing_and_it_is_restarted(group: Stack) -> None:
    _, key = new_client(group, "follower-kill")
    make_collection(group, key)
    before = coordinators(group)
    follower = next(pid for pid, leads in before.items() if not leads)
    acknowledged, refused = _writes_while(
        group, key, lambda: os.kill(follower, signal.SIGKILL), "f"
    )
    assert len(acknowledged) >= 100, refused
    assert fetch_ids(group, key, acknowledged) == set(acknowledged)
    deadline = time.monotonic() + 30
    while True:
        after = coordinators(group, 20)
        if len(after) == 2 and follower not in after:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.5)
    assert sorted(after.values()) == [False, True]


def test_kill_9_of_the_leader_hands_placement_and_duties_on(group: Stack) -> None:
    _, key = new_client(group, "leader-kill")
    make_collection(group, key)
    before = coordinators(group)
    leader = next(pid for pid, leads in before.items() if leads)
    acknowledged, refused = _writes_while(group, key, lambda: os.kill(leader, signal.SIGKILL), "l")
    assert len(acknowledged) >= 100, refused
    assert fetch_ids(group, key, acknowledged) == set(acknowledged)
    deadline = time.monotonic() + 30
    while True:
        after = coordinators(group, 20)
        if leader not in after and True in after.values():
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.5)
    # placement: a tenant nobody held before is placed by the new leader
    _, fresh = new_client(group, "after-takeover")
    make_collection(group, fresh)
    r = upsert(group, fresh, ["x1", "x2"])
    assert r.status_code == 200, r.text
    assert fetch_ids(group, fresh, ["x1", "x2"]) == {"x1", "x2"}
    # duties: the events of both processes are relayed, projected once, the chain whole
    deadline = time.monotonic() + 20
    while True:
        r = once(group, "GET", "/admin/v1/audit/verify", group.admin_token)
        assert r.status_code == 200, r.text
        if r.json()["ok"]:
            break
        assert time.monotonic() < deadline, r.json()
        time.sleep(0.5)


def test_admin_actions_through_both_processes_keep_the_chain_gap_free(group: Stack) -> None:
    for n in range(40):
        new_client(group, f"chain-{n}")
    admin = group.admin_token
    seqs: list[int] = []
    after = 0
    while True:
        r = once(group, "GET", "/admin/v1/events", admin, params={"after_seq": after, "limit": 500})
        events = r.json()["events"]
        if not events:
            break
        seqs += [e["seq"] for e in events]
        after = events[-1]["seq"]
    assert seqs == list(range(1, len(seqs) + 1))
    deadline = time.monotonic() + 20
    while True:
        r = once(group, "GET", "/admin/v1/audit/verify", admin)
        if r.json()["ok"]:
            break
        assert time.monotonic() < deadline, r.json()
        time.sleep(0.5)


def test_on_postgresql_one_process_leads_by_advisory_lock_and_hands_over(
    pg_url: str, tmp_path: Path
) -> None:
    env = {"VP_COORDINATOR_PROCESSES": PROCESSES, "VP_DATABASE_URL": pg_url}
    with running_stack(tmp_path / "vp", **env) as stack:
        seen = coordinators(stack)
        assert sorted(seen.values()) == [False, True], seen
        _revocation_is_seen_everywhere(stack)
        _, key = new_client(stack, "pg-writer")
        make_collection(stack, key)
        leader = next(pid for pid, leads in seen.items() if leads)
        acknowledged, refused = _writes_while(
            stack, key, lambda: os.kill(leader, signal.SIGKILL), "p"
        )
        assert len(acknowledged) >= 100, refused
        assert fetch_ids(stack, key, acknowledged) == set(acknowledged)
        deadline = time.monotonic() + 30
        while True:
            after = coordinators(stack, 20)
            if leader not in after and True in after.values():
                break
            assert time.monotonic() < deadline, after
            time.sleep(0.5)
        _, fresh = new_client(stack, "pg-after-takeover")
        make_collection(stack, fresh)
        r = upsert(stack, fresh, ["y"])
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while True:
            r = once(stack, "GET", "/admin/v1/audit/verify", stack.admin_token)
            if r.status_code == 200 and r.json()["ok"]:
                break
            assert time.monotonic() < deadline, r.text
            time.sleep(0.5)
