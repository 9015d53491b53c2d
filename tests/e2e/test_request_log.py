"""The request log through the fleet: one JSON line per request, the fields, no secrets."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.e2e.conftest import RunningFleet

pytestmark = pytest.mark.e2e

FIELDS = {"ts", "request_id", "client_id", "route", "method", "status", "latency_ms"}


def request_log(fleet: RunningFleet) -> list[dict[str, object]]:
    """The coordinator's request log (stdout in the fleet and in containers)."""
    records = []
    for line in fleet.log_text("coordinator").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if set(record) >= FIELDS:
                records.append(record)
    return records


def by_id(fleet: RunningFleet, request_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [r for r in request_log(fleet) if r["request_id"] == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no request log line for {request_id}")


def test_every_request_is_one_json_line_with_the_fields(fleet: RunningFleet) -> None:
    cid, key = fleet.new_client("reqlog")
    with fleet.https(key) as c:
        r = c.post(
            "/v1/collections",
            json={"name": "rl", "dimension": 2},
            headers={"X-Request-Id": "e2e-create-0001"},
        )
        assert r.status_code == 201 and r.headers["x-request-id"] == "e2e-create-0001"
        r = c.post(
            "/v1/collections/rl/upsert",
            json={"vectors": [{"id": "v1", "values": [0.7312945, 0.2718281]}]},
            headers={"X-Request-Id": "e2e-upsert-0001"},
        )
        assert r.status_code == 200
        r = c.get("/v1/collections/missing-one", headers={"X-Request-Id": "e2e-missing-0001"})
        assert r.status_code == 404
        assert r.json()["error"]["request_id"] == "e2e-missing-0001"
        bad_id = c.get("/v1/collections", headers={"X-Request-Id": "bad id!"})
        generated = bad_id.headers["x-request-id"]
        assert generated != "bad id!" and re.fullmatch(r"[A-Za-z0-9._-]{8,128}", generated)
    with fleet.https("vp_nosuchkey_" + "x" * 43) as stranger:
        r = stranger.get("/v1/no/such/route", headers={"X-Request-Id": "e2e-unmatched-01"})
    # Refused at the admission gate, before any routing: a stranger learns nothing of routes.
    assert r.status_code == 401

    create = by_id(fleet, "e2e-create-0001")
    assert create["client_id"] == cid
    assert create["route"] == "/v1/collections"
    assert create["method"] == "POST" and create["status"] == 201
    assert isinstance(create["latency_ms"], int | float) and create["latency_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(create["ts"]))
    upsert = by_id(fleet, "e2e-upsert-0001")
    assert upsert["route"] == "/v1/collections/{name}/upsert" and upsert["status"] == 200
    missing = by_id(fleet, "e2e-missing-0001")
    assert missing["route"] == "/v1/collections/{name}" and missing["status"] == 404
    assert by_id(fleet, "e2e-unmatched-01")["route"] == "unmatched"
    # nginx replaced the malformed id with its own, and the coordinator logged that one
    assert by_id(fleet, generated)["route"] == "/v1/collections"
    # nginx's access log carries the same ids
    access = (fleet.runtime_dir / "logs" / "access.log").read_text()
    assert '"request_id":"e2e-upsert-0001"' in access

    text = fleet.log_text("coordinator")
    assert key not in text and key.split("_", 2)[2] not in text
    assert "0.7312945" not in text and "2718281" not in text  # no vectors
    assert "missing-one" not in json.dumps(request_log(fleet))  # templates, not raw paths
