"""Named operators (issue 22): each person's admin actions carry their name.

Against a real ``vectorpanda up``: two operators get their own tokens (one through
the ``vectorpanda admin operators`` CLI, which reads the bootstrap token from the
data directory's env file, one through the admin API); one changes a tier, the
other pauses a client. The event log and the dashboard's audit page name each of
them; a tier change without a reason is refused and changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.oauth_provider import (
    OPERATOR_EMAIL,
    CookieClient,
    RunningProvider,
    dashboard_stack,
)
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    running = RunningProvider()
    running.state.add_account(OPERATOR_EMAIL)
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(provider: RunningProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with dashboard_stack(tmp_path_factory.mktemp("vp-operators"), provider.state) as s:
        yield s


def admin_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """``vectorpanda admin ...`` with no admin token in the environment or argv."""
    env = {k: v for k, v in os.environ.items() if k != "VP_ADMIN_TOKEN"}
    cmd = [sys.executable, "-m", "vectorpanda", "admin", *args]
    cmd += ["--url", stack.url, "--data-dir", str(stack.data_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def as_token(stack: Stack, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=stack.url, headers=headers, timeout=60)


def test_two_operators_are_named_in_the_events_and_the_audit_page(
    stack: Stack, provider: RunningProvider
) -> None:
    created = admin_cli(stack, "operators", "create", "--name", "alice", "--email", "a@ops.test")
    assert created.returncode == 0, created.stderr
    alice_token = created.stdout.strip().splitlines()[-1]
    assert alice_token.startswith("vpo_")
    with stack.admin() as admin:
        r = admin.post("/admin/v1/operators", json={"name": "bob", "email": "b@ops.test"})
        assert r.status_code == 201, r.text
        bob_token, bob_id = r.json()["token"], r.json()["operator_id"]
        assert r.json()["actor"] == "operator:bob"
        again = admin.post("/admin/v1/operators", json={"name": "bob", "email": "x@ops.test"})
        assert again.status_code == 409  # a name always means one person
        bad = admin.post("/admin/v1/operators", json={"name": "Bob Smith", "email": "x@ops.test"})
        assert bad.status_code == 422
        r = admin.post("/admin/v1/clients", json={"name": "Acme", "email": "acme@example.com"})
        cid = r.json()["client_id"]
        listed = admin.get("/admin/v1/operators").json()["operators"]
        assert [o["name"] for o in listed] == ["alice", "bob"]
        assert all("token" not in o and "digest" not in o for o in listed)

    with as_token(stack, alice_token) as alice:
        r = alice.post(f"/admin/v1/clients/{cid}/tier", json={"tier": "premium"})
        assert r.status_code == 422, r.text  # no reason
        assert alice.get(f"/admin/v1/clients/{cid}").json()["tier"] == "free"
        body = {"tier": "premium", "reason": "signed the annual contract"}
        assert alice.post(f"/admin/v1/clients/{cid}/tier", json=body).status_code == 200
    with as_token(stack, bob_token) as bob:
        assert bob.post(f"/admin/v1/clients/{cid}/pause", json={}).status_code == 422
        r = bob.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "invoice overdue"})
        assert r.status_code == 200, r.text

    with stack.admin() as admin:
        page = admin.get("/admin/v1/events", params={"client_id": cid}).json()["events"]
        by_type = {e["type"]: e for e in page}
        assert by_type["client.created"]["actor"] == "admin"
        assert by_type["client.tier_changed"]["actor"] == "operator:alice"
        assert by_type["client.tier_changed"]["data"]["reason"] == "signed the annual contract"
        assert by_type["client.paused"]["actor"] == "operator:bob"
        assert by_type["client.paused"]["data"]["reason"] == "invoice overdue"
        issued = admin.get("/admin/v1/events", params={"type": "operator.issued"}).json()
        assert [(e["actor"], e["data"]["name"]) for e in issued["events"]] == [
            ("admin", "alice"),
            ("admin", "bob"),
        ]

    # Revoking stops the token at once, and is itself an event.
    revoked = admin_cli(stack, "operators", "revoke", bob_id, "--reason", "left the team")
    assert revoked.returncode == 0, revoked.stderr
    with as_token(stack, bob_token) as bob:
        assert bob.get("/admin/v1/clients").status_code == 401
    with as_token(stack, alice_token[:-4] + "AAAA") as forged:
        assert forged.get("/admin/v1/clients").status_code == 401
    listing = admin_cli(stack, "operators", "list")
    assert "alice" in listing.stdout and "revoked" in listing.stdout
    with stack.admin() as admin:
        gone = admin.get("/admin/v1/events", params={"type": "operator.revoked"}).json()
        assert [(e["actor"], e["data"]["name"]) for e in gone["events"]] == [("admin", "bob")]

    # The dashboard's audit page (fed by the projection) names both operators.
    operator = CookieClient(stack.url)
    try:
        assert operator.login(provider.state, OPERATOR_EMAIL).status_code == 303
        deadline = time.monotonic() + 30
        while True:
            html = operator.get("/dashboard/operator/audit", params={"client_id": cid}).text
            if "operator:alice" in html and "operator:bob" in html:
                break
            assert time.monotonic() < deadline, html[-2000:]
            time.sleep(0.2)
    finally:
        operator.close()
    with stack.admin() as admin:
        report = admin.get("/admin/v1/audit/verify").json()
        assert report["ok"] is True, report
