"""API keys a security review would accept, through a real ``vectorpanda up``.

Expiry (the same 401 as a revoked key, also for a key the cache holds), the
address allowlist (socket peer unless a trusted proxy names the client; a spoofed
header from anyone else is ignored), last_used_at (appears after use, not
rewritten within a minute), one 401 body for unknown and wrong keys, and the
new fields in the admin API, the admin CLI and the dashboard.

The stack trusts only 127.0.0.1 as a proxy; requests from 127.0.0.2 (also
loopback) are an untrusted peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.oauth_provider import CookieClient, RunningProvider, dashboard_stack
from tests.stack import Stack

pytestmark = pytest.mark.integration

FLUSH_S = 0.2


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    running = RunningProvider()
    running.state.add_account("keys@example.com")
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(provider: RunningProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"VP_TRUSTED_PROXIES": "127.0.0.1/32", "VP_KEY_USE_FLUSH_S": str(FLUSH_S)}
    with dashboard_stack(tmp_path_factory.mktemp("vp-keys"), provider.state, **env) as s:
        yield s


def direct(stack: Stack, token: str, source: str = "127.0.0.1") -> httpx.Client:
    """A client connecting from ``source`` (a loopback address) to the coordinator."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{stack.port}",
        headers={"Authorization": f"Bearer {token}"},
        transport=httpx.HTTPTransport(local_address=source),
        timeout=30,
    )


def new_client(stack: Stack, tier: str, email: str | None = None) -> str:
    with direct(stack, stack.admin_token) as admin:
        body = {"name": f"keys-{tier}", "email": email or f"{tier}@keys.example", "tier": tier}
        r = admin.post("/admin/v1/clients", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["client_id"])


def issue(stack: Stack, client_id: str, **body: Any) -> httpx.Response:
    with direct(stack, stack.admin_token) as admin:
        return admin.post(
            f"/admin/v1/clients/{client_id}/keys", json={"scopes": ["read", "write"], **body}
        )


def listed(stack: Stack, client_id: str) -> dict[str, dict[str, Any]]:
    with direct(stack, stack.admin_token) as admin:
        r = admin.get(f"/admin/v1/clients/{client_id}/keys")
        assert r.status_code == 200, r.text
        return {k["key_id"]: k for k in r.json()["keys"]}


def error_without_id(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["error"]["request_id"] == r.headers["X-Request-Id"]
    body["error"].pop("request_id")
    return dict(body)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_issue_validates_expiry_and_cidrs_with_422(stack: Stack) -> None:
    free = new_client(stack, "free")
    now = datetime.now(UTC)
    bad = [
        {"allowed_cidrs": ["10.0.0.1/8"]},
        {"allowed_cidrs": ["not-a-network"]},
        {"allowed_cidrs": ["10.0.0.0/33"]},
        {"allowed_cidrs": "10.0.0.0/8"},
        {"expires_at": rfc3339(now - timedelta(minutes=1))},
        {"expires_at": rfc3339(now + timedelta(days=91))},  # free tier: at most 90 days
        {"expires_at": "2030-01-01T00:00:00"},  # no offset
        {"expires_at": "next week"},
        {"expires_at": 1893456000},
    ]
    for body in bad:
        r = issue(stack, free, **body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["code"] == "invalid", r.text
    assert listed(stack, free) == {}  # nothing was issued

    asked = now + timedelta(days=30)
    r = issue(stack, free, expires_at=rfc3339(asked), allowed_cidrs=["203.0.113.0/24", "::1"])
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"key_id", "api_key", "expires_at"}
    assert r.json()["expires_at"] == rfc3339(asked)
    (shown,) = listed(stack, free).values()
    assert shown["expires_at"] == rfc3339(asked)
    assert shown["allowed_cidrs"] == ["203.0.113.0/24", "::1/128"]
    assert shown["last_used_at"] is None
    assert r.json()["api_key"].split("_", 2)[2] not in json.dumps(shown)

    # Omitted: the tier's maximum (90 days on free); premium keys may live for ever.
    r = issue(stack, free)
    default_expiry = datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00"))
    assert abs(default_expiry - (now + timedelta(days=90))) < timedelta(minutes=5)
    assert issue(stack, new_client(stack, "premium")).json()["expires_at"] is None

    # The event carries the new fields (schema version 2).
    with direct(stack, stack.admin_token) as admin:
        events = admin.get(
            "/admin/v1/events", params={"client_id": free, "type": "api_key.issued"}
        ).json()["events"]
    first = events[0]
    assert first["schema_version"] == 2
    assert first["data"]["expires_at"] == rfc3339(asked)
    assert first["data"]["allowed_cidrs"] == ["203.0.113.0/24", "::1/128"]


def test_an_expired_key_gets_the_same_401_as_a_revoked_one_also_when_cached(
    stack: Stack,
) -> None:
    premium = new_client(stack, "premium")
    expiry = datetime.now(UTC) + timedelta(seconds=3)
    expiring = issue(stack, premium, expires_at=rfc3339(expiry)).json()
    revoked = issue(stack, premium).json()
    with direct(stack, expiring["api_key"]) as c:
        assert c.get("/v1/usage").status_code == 200  # now in the key cache
    with direct(stack, stack.admin_token) as admin:
        r = admin.delete(f"/admin/v1/clients/{premium}/keys/{revoked['key_id']}")
        assert r.status_code == 204
    with direct(stack, revoked["api_key"]) as c:
        revoked_answer = c.get("/v1/usage")
    assert revoked_answer.status_code == 401
    while datetime.now(UTC) < expiry + timedelta(milliseconds=50):
        time.sleep(0.05)
    with direct(stack, expiring["api_key"]) as c:
        expired_answer = c.get("/v1/usage")
        assert c.post("/v1/collections", json={"name": "x", "dimension": 2}).status_code == 401
    assert expired_answer.status_code == 401
    assert error_without_id(expired_answer) == error_without_id(revoked_answer)
    assert expired_answer.headers.keys() == revoked_answer.headers.keys()
    assert listed(stack, premium)[expiring["key_id"]]["revoked_at"] is None  # expired, not revoked


def test_unknown_key_id_and_wrong_secret_get_identical_401_bodies(stack: Stack) -> None:
    client_id = new_client(stack, "standard")
    key = issue(stack, client_id).json()
    unknown = "vp_0123456789abcdef_" + "A" * 43
    wrong = f"vp_{key['key_id']}_" + "A" * 43
    answers = []
    for presented in (unknown, wrong, unknown, wrong):
        with direct(stack, presented) as c:
            answers.append(c.get("/v1/collections"))
    assert {a.status_code for a in answers} == {401}
    bodies = [error_without_id(a) for a in answers]
    assert all(b == bodies[0] for b in bodies), bodies
    assert bodies[0]["error"]["code"] == "unauthorized"
    assert {tuple(sorted(a.headers.keys())) for a in answers} == {
        tuple(sorted(answers[0].headers.keys()))
    }


def test_allowed_cidrs_use_the_socket_peer_unless_a_trusted_proxy_names_the_client(
    stack: Stack,
) -> None:
    client_id = new_client(stack, "standard")
    tenk = issue(stack, client_id, allowed_cidrs=["10.0.0.0/8"]).json()["api_key"]
    loop2 = issue(stack, client_id, allowed_cidrs=["127.0.0.2/32"]).json()["api_key"]
    anywhere = issue(stack, client_id).json()["api_key"]

    # From the trusted proxy (127.0.0.1): X-Real-IP names the client.
    with direct(stack, tenk) as c:
        refused = c.get("/v1/usage")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
        assert "allowed_cidrs" in refused.json()["error"]["message"]
        assert c.get("/v1/usage", headers={"X-Real-IP": "10.20.30.40"}).status_code == 200
        # Without X-Real-IP, the right-most X-Forwarded-For entry (the proxy's own).
        forwarded = {"X-Forwarded-For": "192.0.2.1, 10.1.1.1"}
        assert c.get("/v1/usage", headers=forwarded).status_code == 200
        spoofed_left = {"X-Forwarded-For": "10.1.1.1, 192.0.2.1"}
        assert c.get("/v1/usage", headers=spoofed_left).status_code == 403
        assert c.get("/v1/usage", headers={"X-Real-IP": "192.0.2.1"}).status_code == 403

    # From an untrusted peer (127.0.0.2) the headers are ignored: no spoofing in.
    spoof = {"X-Real-IP": "10.20.30.40", "X-Forwarded-For": "10.20.30.40"}
    with direct(stack, tenk, source="127.0.0.2") as c:
        assert c.get("/v1/usage", headers=spoof).status_code == 403
    with direct(stack, loop2, source="127.0.0.2") as c:
        assert c.get("/v1/usage").status_code == 200
        assert c.get("/v1/usage", headers={"X-Real-IP": "10.1.1.1"}).status_code == 200
    with direct(stack, loop2) as c:  # from 127.0.0.1 itself, no header: not 127.0.0.2
        assert c.get("/v1/usage").status_code == 403
    with direct(stack, anywhere, source="127.0.0.2") as c:
        assert c.get("/v1/usage").status_code == 200
    # A wrong secret for a restricted key is still the plain 401, not a 403.
    wrong = tenk.rsplit("_", 1)[0] + "_" + "B" * 43
    with direct(stack, wrong, source="127.0.0.2") as c:
        assert c.get("/v1/usage").status_code == 401


def wait_for_last_used(stack: Stack, client_id: str, key_id: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        value = listed(stack, client_id)[key_id]["last_used_at"]
        if value is not None:
            return str(value)
        assert time.monotonic() < deadline, "last_used_at never appeared"
        time.sleep(FLUSH_S)


def test_last_used_at_appears_after_use_and_is_not_rewritten_within_a_minute(
    stack: Stack,
) -> None:
    client_id = new_client(stack, "standard")
    key = issue(stack, client_id).json()
    unused = issue(stack, client_id).json()
    assert listed(stack, client_id)[key["key_id"]]["last_used_at"] is None
    before = datetime.now(UTC)
    with direct(stack, key["api_key"]) as c:
        assert c.get("/v1/usage").status_code == 200
    first = wait_for_last_used(stack, client_id, key["key_id"])
    first_at = datetime.fromisoformat(first.replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= first_at <= datetime.now(UTC)
    # More use, over many flush intervals: still the first stamp (coarse: once a minute).
    with direct(stack, key["api_key"]) as c:
        for _ in range(10):
            assert c.get("/v1/usage").status_code == 200
            time.sleep(FLUSH_S)
    shown = listed(stack, client_id)
    assert shown[key["key_id"]]["last_used_at"] == first
    assert shown[unused["key_id"]]["last_used_at"] is None
    # A use is not an admin action: no event recorded it.
    with direct(stack, stack.admin_token) as admin:
        types = {
            e["type"]
            for e in admin.get("/admin/v1/events", params={"client_id": client_id}).json()["events"]
        }
    assert types == {"client.created", "api_key.issued"}


def test_admin_cli_issues_a_restricted_expiring_key_and_lists_the_fields(stack: Stack) -> None:
    client_id = new_client(stack, "standard")
    expiry = rfc3339(datetime.now(UTC) + timedelta(days=7))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VP_")}
    env["VP_URL"] = f"http://127.0.0.1:{stack.port}"
    base = [sys.executable, "-m", "vectorpanda", "admin"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*base, *args, "--data-dir", str(stack.data_dir)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    created = json.loads(
        run(
            "keys",
            "create",
            client_id,
            "--scopes",
            "read",
            "--expires-at",
            expiry,
            "--allowed-cidr",
            "10.0.0.0/8",
            "--allowed-cidr",
            "2001:db8::/32",
            "--json",
        )
    )
    assert created["expires_at"] == expiry
    (shown,) = json.loads(run("keys", "list", client_id, "--json"))
    assert shown["allowed_cidrs"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert shown["expires_at"] == expiry and shown["last_used_at"] is None
    human = run("keys", "list", client_id)
    assert "10.0.0.0/8,2001:db8::/32" in human and expiry[:19] in human


def test_dashboard_key_list_shows_expiry_last_use_and_networks(
    stack: Stack, provider: RunningProvider
) -> None:
    client_id = new_client(stack, "standard", email="keys@example.com")
    expiry = datetime.now(UTC) + timedelta(days=10)
    key = issue(stack, client_id, expires_at=rfc3339(expiry), allowed_cidrs=["127.0.0.0/8"]).json()
    with direct(stack, key["api_key"]) as c:
        assert c.get("/v1/usage").status_code == 200
    used = wait_for_last_used(stack, client_id, key["key_id"])
    browser = CookieClient(stack.url)
    try:
        r = browser.login(provider.state, "keys@example.com")
        assert r.status_code == 303, r.text
        page = browser.get("/dashboard")
        assert page.status_code == 200
        row = page.text.split(f'data-key-id="{key["key_id"]}"', 1)[1].split("</tr>", 1)[0]
        assert rfc3339(expiry)[:16].replace("T", " ") in row
        assert used[:16].replace("T", " ") in row
        assert "127.0.0.0/8" in row
        # The dashboard's own form issues keys with an expiry day and networks too.
        day = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
        form = {"label": "form", "scope_read": "on", "csrf_token": browser.csrf()}
        r = browser.post(
            "/dashboard/keys",
            data=form | {"expires_on": day, "allowed_cidrs": "10.0.0.0/8, 192.0.2.0/24"},
        )
        assert r.status_code == 200 and "shown only this once" in r.text, r.text
        made = [k for k in listed(stack, client_id).values() if k["label"] == "form"]
        assert len(made) == 1
        assert made[0]["expires_at"].startswith(f"{day}T23:59:59")
        assert made[0]["allowed_cidrs"] == ["10.0.0.0/8", "192.0.2.0/24"]
        before = len(listed(stack, client_id))
        for bad in ({"expires_on": "tomorrow"}, {"allowed_cidrs": "10.0.0.1/8"}):
            r = browser.post("/dashboard/keys", data=form | {"csrf_token": browser.csrf()} | bad)
            assert r.status_code == 422, r.text
        assert len(listed(stack, client_id)) == before
    finally:
        browser.close()
