"""Planted canary secrets never show up in logs, error bodies, files or command lines.

The fleet fixture starts every process with canary values for the admin token,
the key pepper and the worker secret; this test adds API keys (issued and
forged), drives successes and errors through nginx and the internal address,
then greps everything a process wrote or exposes.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import RunningFleet

pytestmark = pytest.mark.e2e


def _descendants(pids: set[int]) -> set[int]:
    """The pids plus all their live descendants (nginx workers, worker processes, ...)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found = set(pids)
    while True:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def test_no_canary_in_logs_bodies_files_or_argv(fleet: RunningFleet) -> None:
    cid, key = fleet.new_client("canary")
    key_id, key_secret = key.split("_", 2)[1:]
    forged = f"vp_{key_id}_CANARYforged{secrets.token_urlsafe(32)}"
    canaries = {**fleet.canaries, "api_key_secret": key_secret, "forged_key": forged}
    canaries.update({f"issued_{i}": s for i, s in enumerate(fleet.issued_secrets)})

    responses: list[httpx.Response] = []
    with fleet.https(key) as c:
        responses += [
            c.post("/v1/collections", json={"name": "cn", "dimension": 2}),
            c.post("/v1/collections/cn/upsert", json={"vectors": [{"id": "a", "values": [1, 2]}]}),
            c.post("/v1/collections/cn/query", json={"vector": [1.0, 2.0], "top_k": 1}),
            c.post("/v1/collections/cn/upsert", json={"vectors": [{"id": "a", "values": [1]}]}),
            c.post(
                "/v1/collections/cn/upsert",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            c.post("/v1/collections", json={"name": "cn", "dimension": 2, "bogus": 1}),
            c.get("/admin/v1/clients"),  # a data key on the admin plane
        ]
    for token in (forged, fleet.admin_token, f"{fleet.admin_token}x", "vp_malformed"):
        with fleet.https(token) as c:  # wrong credentials on both planes
            responses += [c.get("/v1/collections"), c.get("/admin/v1/clients/nope")]
    with fleet.admin() as admin:
        issued = admin.post(f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read"]})
        read_only = issued.json()["api_key"]
        canaries["read_only_key"] = read_only
        responses += [
            admin.get(f"/admin/v1/clients/{cid}/keys"),
            admin.get("/admin/v1/events", params={"limit": 1000}),
            admin.post("/admin/v1/clients", json={"name": 5}),
            admin.get("/admin/v1/workers"),
        ]
    with fleet.https(read_only) as c:  # a key lacking the scope
        responses.append(c.delete("/v1/collections/cn"))
    direct = httpx.Client(base_url=fleet.api_url, timeout=30)
    responses += [
        direct.get("/metrics"),
        direct.get("/v1/collections", headers={"Authorization": f"Bearer {forged}"}),
        direct.post("/admin/v1/clients", headers={"Authorization": f"Bearer {forged}"}),
    ]
    direct.close()
    statuses = {r.status_code for r in responses}
    assert {200, 201, 400, 401, 403, 404, 422} <= statuses, statuses

    # error bodies and headers
    for r in responses:
        blob = r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        for name, value in canaries.items():
            assert value not in blob, f"{name} in a {r.status_code} response to {r.request.url}"

    # every file the fleet wrote (logs, SQLite, segments, nginx's runtime dir), but the env file
    roots = [fleet.data_dir, fleet.runtime_dir]
    checked = 0
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file() or path.name == "vectorpanda.env":
                continue
            data = path.read_bytes()
            checked += 1
            for name, value in canaries.items():
                assert value.encode() not in data, f"{name} in {path}"
    assert checked >= 10
    output = "".join(fleet.proc.output)
    for name, value in canaries.items():
        assert value not in output, f"{name} in the fleet's own output"

    # argv (and environment: this topology passes secrets only through the env file)
    pids = _descendants({int(p) for p in fleet.info["pids"].values()})
    assert len(pids) >= 7  # fleet, coordinator, 2 workers, projections, nginx + its workers
    for pid in pids:
        for what in ("cmdline", "environ"):
            try:
                data = Path(f"/proc/{pid}/{what}").read_bytes()
            except (FileNotFoundError, ProcessLookupError):
                continue
            for name, value in canaries.items():
                assert value.encode() not in data, f"{name} in /proc/{pid}/{what}"
