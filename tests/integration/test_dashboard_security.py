"""Dashboard login and session security against a real ``vectorpanda up``.

Each attack is refused: wrong or replayed state, a code bound to another PKCE
verifier, a foreign redirect URI, another client's session or CSRF token, a
missing CSRF token, an expired session. One client never sees another's data.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.oauth_provider import (
    COOKIE,
    OPERATOR_EMAIL,
    CookieClient,
    OAuthProvider,
    RunningProvider,
    dashboard_stack,
)
from tests.stack import Stack

pytestmark = pytest.mark.integration

IDLE_S, ABSOLUTE_S = 600, 3600


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    running = RunningProvider()
    for email in ("a@example.com", "b@example.com", "nobody@example.com", OPERATOR_EMAIL):
        running.state.add_account(email)
    running.state.add_account("unverified@example.com", verified=False)
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(provider: RunningProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"VP_SESSION_IDLE_S": str(IDLE_S), "VP_SESSION_ABSOLUTE_S": str(ABSOLUTE_S)}
    with dashboard_stack(tmp_path_factory.mktemp("vp-dash-sec"), provider.state, **env) as s:
        yield s


@pytest.fixture(scope="module")
def clients(stack: Stack) -> dict[str, dict[str, str]]:
    """Clients a and b, each with a collection and a key; plus an unverified-email client."""
    out: dict[str, dict[str, str]] = {}
    admin = httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    for name in ("a", "b", "unverified"):
        r = admin.post("/admin/v1/clients", json={"name": name, "email": f"{name}@example.com"})
        cid = r.json()["client_id"]
        r = admin.post(
            f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read", "write", "manage"]}
        )
        key, key_id = r.json()["api_key"], r.json()["key_id"]
        api = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"})
        r = api.post("/v1/collections", json={"name": f"{name}-private", "dimension": 2})
        assert r.status_code == 201, r.text
        out[name] = {"client_id": cid, "key": key, "key_id": key_id}
    return out


@pytest.fixture
def browser(stack: Stack) -> Iterator[CookieClient]:
    c = CookieClient(stack.url)
    yield c
    c.close()


def signed_in(stack: Stack, oauth: OAuthProvider, email: str) -> CookieClient:
    c = CookieClient(stack.url)
    r = c.login(oauth, email)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.text
    return c


def rows(stack: Stack) -> int:
    with sqlite3.connect(stack.data_dir / "sessions.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM dashboard_sessions").fetchone()[0])


def age_session(stack: Stack, session_id: str, column: str, seconds: float) -> None:
    id_hash = hashlib.sha256(session_id.encode()).hexdigest()
    with sqlite3.connect(stack.data_dir / "sessions.sqlite3") as db:
        n = db.execute(
            f"UPDATE dashboard_sessions SET {column} = ? WHERE id_hash = ?",
            (time.time() - seconds, id_hash),
        ).rowcount
    assert n == 1


def test_cookie_flags_and_rotation_at_login(
    stack: Stack,
    provider: RunningProvider,
    clients: dict[str, dict[str, str]],
    browser: CookieClient,
) -> None:
    authorize = browser.start_login()
    pre_login_id = browser.session_id
    assert pre_login_id
    r = browser.finish(provider.state.approve(authorize, "a@example.com"))
    assert r.status_code == 303
    cookie = browser.set_cookies[-1]
    name_value, *attrs = [p.strip() for p in cookie.split(";")]
    flags = {a.split("=")[0].lower(): a.partition("=")[2] for a in attrs}
    assert name_value.startswith(f"{COOKIE}=")
    assert "secure" in flags and "httponly" in flags
    assert flags["samesite"].lower() == "lax" and flags["path"] == "/"
    assert "domain" not in flags  # __Host-: host-only
    # The id rotated at login, and the pre-login id is gone.
    assert browser.session_id and browser.session_id != pre_login_id
    r = httpx.get(f"{stack.url}/dashboard", headers={"Cookie": f"{COOKIE}={pre_login_id}"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # The cookie holds a random id only: nothing of the email or client in it.
    assert len(browser.session_id) >= 40 and "a@example.com" not in cookie
    assert clients["a"]["client_id"] not in cookie


def test_wrong_state_is_refused_and_burns_the_attempt(
    provider: RunningProvider, browser: CookieClient, clients: dict[str, dict[str, str]]
) -> None:
    callback = httpx.URL(provider.state.approve(browser.start_login(), "a@example.com"))
    params = dict(callback.params)
    r = browser.get(callback.path, params={**params, "state": "forged-" + params["state"][7:]})
    assert r.status_code == 400 and "start again" in r.text
    assert browser.session_id is None
    r = browser.get(callback.path, params=params)  # even the right state is now too late
    assert r.status_code == 400
    assert browser.get("/dashboard").status_code == 303


def test_replayed_callback_is_refused(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    victim = CookieClient(stack.url)
    callback = provider.state.approve(victim.start_login(), "a@example.com")
    login_cookie = victim.session_id
    assert victim.finish(callback).status_code == 303
    # The same callback again: with the login cookie, with the new session, with none.
    for cookie in (login_cookie, victim.session_id, None):
        replay = CookieClient(stack.url)
        replay.session_id = cookie
        assert replay.finish(callback).status_code == 400
    # An attacker with a login attempt of their own cannot use the victim's state either.
    attacker = CookieClient(stack.url)
    attacker.start_login()
    assert attacker.finish(callback).status_code == 400
    assert attacker.get("/dashboard").status_code == 303


def test_code_bound_to_another_pkce_verifier_is_refused(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    victim, attacker = CookieClient(stack.url), CookieClient(stack.url)
    victim_callback = httpx.URL(provider.state.approve(victim.start_login(), "a@example.com"))
    attacker_authorize = httpx.URL(attacker.start_login())
    # The attacker injects the victim's code into their own (valid-state) callback.
    path = victim_callback.path
    params = {"code": victim_callback.params["code"], "state": attacker_authorize.params["state"]}
    seen = len(provider.state.token_requests)
    r = attacker.get(path, params=params)
    assert r.status_code == 400 and "refused the login code" in r.text
    assert attacker.get("/dashboard").status_code == 303
    (token_request,) = provider.state.token_requests[seen:]
    assert token_request["code_verifier"]  # the dashboard sent its own verifier; it did not match
    # Every authorization request carried an S256 challenge and, for OIDC, a nonce.
    for q in provider.state.authorize_requests:
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert q["provider"] != "google" or q["nonce"]


def test_redirect_uri_is_fixed_and_foreign_ones_fail(
    stack: Stack, provider: RunningProvider, browser: CookieClient
) -> None:
    # A sign-in started under another host name is refused, naming the real address.
    r = browser.get(
        "/login/google", headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    )
    assert r.status_code == 400 and f"{stack.url}/login" in r.text
    assert "location" not in r.headers
    # Whatever the forwarded host says, the redirect URI is the configured one.
    r = browser.get("/login/google", headers={"X-Forwarded-Host": "evil.example"})
    authorize = httpx.URL(r.headers["location"])
    assert authorize.params["redirect_uri"] == f"{stack.url}/login/google/callback"
    # A foreign redirect URI is not honoured by the provider (exact match).
    foreign = authorize.copy_set_param("redirect_uri", "http://evil.example/login/google/callback")
    assert httpx.get(str(foreign)).status_code == 400
    # The token exchange repeats the registered URI.
    assert (
        browser.finish(provider.state.approve(str(authorize), "a@example.com")).status_code == 303
    )
    assert provider.state.token_requests[-1]["redirect_uri"] == f"{stack.url}/login/google/callback"


def test_one_client_never_sees_or_touches_another(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    a, b = (
        signed_in(stack, provider.state, "a@example.com"),
        signed_in(stack, provider.state, "b@example.com"),
    )
    page_a, page_b = a.get("/dashboard").text, b.get("/dashboard").text
    assert "a-private" in page_a and "b-private" in page_b
    for secret in ("b-private", clients["b"]["client_id"], clients["b"]["key_id"], "b@example.com"):
        assert secret not in page_a
    assert clients["a"]["key_id"] not in page_b
    # A's session cannot revoke B's key, even with a valid CSRF token of its own.
    r = a.post(f"/dashboard/keys/{clients['b']['key_id']}/revoke", data={"csrf_token": a.csrf()})
    assert r.status_code == 404
    # A's session with B's CSRF token is refused.
    r = a.post(f"/dashboard/keys/{clients['a']['key_id']}/revoke", data={"csrf_token": b.csrf()})
    assert r.status_code == 403
    # A client session gets no operator pages.
    for path in (
        "/dashboard/operator",
        "/dashboard/operator/audit",
        f"/dashboard/operator/clients/{clients['b']['client_id']}",
    ):
        assert a.get(path).status_code == 403
    r = a.post(
        f"/dashboard/operator/clients/{clients['b']['client_id']}/pause",
        data={"csrf_token": a.csrf(), "reason": "x"},
    )
    assert r.status_code == 403
    with httpx.Client(base_url=stack.url) as api:
        for name in ("a", "b"):
            headers = {"Authorization": f"Bearer {clients[name]['key']}"}
            assert api.get("/v1/collections", headers=headers).status_code == 200
    # A made-up session id is nobody's.
    forged = CookieClient(stack.url)
    forged.session_id = "x" * 43
    assert forged.get("/dashboard").status_code == 303


def test_missing_csrf_token_is_refused(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    a = signed_in(stack, provider.state, "a@example.com")
    before = a.get("/dashboard").text.count("data-key-id=")
    r = a.post("/dashboard/keys", data={"label": "csrf", "scope_read": "on"})
    assert r.status_code == 403
    r = a.post("/dashboard/keys", data={"label": "csrf", "scope_read": "on", "csrf_token": ""})
    assert r.status_code == 403
    assert a.get("/dashboard").text.count("data-key-id=") == before
    assert a.post("/logout").status_code == 403
    assert a.get("/dashboard").status_code == 200  # still signed in
    # With the token, it works (so the refusals above were about the token).
    r = a.post("/dashboard/keys", data={"label": "ok", "scope_read": "on", "csrf_token": a.csrf()})
    assert r.status_code == 200 and "shown only this once" in r.text


def test_sessions_expire_idle_and_absolute(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    idle = signed_in(stack, provider.state, "a@example.com")
    assert idle.get("/dashboard").status_code == 200
    assert idle.session_id
    age_session(stack, idle.session_id, "last_seen_at", IDLE_S + 5)
    r = idle.get("/dashboard")
    assert r.status_code == 303 and r.headers["location"] == "/login?expired=1"
    assert "expired" in idle.get(r.headers["location"]).text

    busy = signed_in(stack, provider.state, "a@example.com")
    assert busy.session_id
    sid = busy.session_id
    age_session(stack, sid, "created_at", ABSOLUTE_S + 5)  # recently active, but too old
    assert busy.get("/dashboard").status_code == 303
    with sqlite3.connect(stack.data_dir / "sessions.sqlite3") as db:
        id_hash = hashlib.sha256(sid.encode()).hexdigest()
        assert (
            db.execute("SELECT 1 FROM dashboard_sessions WHERE id_hash=?", (id_hash,)).fetchone()
            is None
        )


def test_logout_deletes_the_row(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    a = signed_in(stack, provider.state, "a@example.com")
    sid = a.session_id
    before = rows(stack)
    r = a.post("/logout", data={"csrf_token": a.csrf()})
    assert r.status_code == 303 and r.headers["location"] == "/login?bye=1"
    assert rows(stack) == before - 1
    old = CookieClient(stack.url)
    old.session_id = sid
    assert old.get("/dashboard").status_code == 303


def test_unknown_or_unverified_email_gets_no_account(
    stack: Stack,
    provider: RunningProvider,
    clients: dict[str, dict[str, str]],
    browser: CookieClient,
) -> None:
    admin = httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    before = admin.get("/admin/v1/clients").json()
    r = browser.login(provider.state, "nobody@example.com")
    assert r.status_code == 403
    assert "No account for this email" in r.text and "Nothing was created" in r.text
    assert browser.session_id is None
    assert admin.get("/admin/v1/clients").json() == before
    # A provider that does not vouch for the email does not get you in, even if it matches.
    r = CookieClient(stack.url).login(provider.state, "unverified@example.com")
    assert r.status_code == 400 and "not verified" in r.text


def test_github_login_and_operator_role(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    gh = CookieClient(stack.url)
    r = gh.login(provider.state, "b@example.com", provider="github")
    assert r.status_code == 303
    assert "b-private" in gh.get("/dashboard").text
    ops = CookieClient(stack.url)
    assert ops.login(provider.state, OPERATOR_EMAIL, provider="github").status_code == 303
    r = ops.get("/dashboard")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/operator"
    page = ops.get("/dashboard/operator").text
    assert clients["a"]["client_id"] in page and clients["b"]["client_id"] in page


def test_expired_login_attempt_and_unknown_provider(
    stack: Stack, browser: CookieClient, tmp_path: Path
) -> None:
    assert browser.get("/login/myspace").status_code == 404
    assert (
        browser.get("/login/myspace/callback", params={"code": "x", "state": "y"}).status_code
        == 404
    )
    assert (
        browser.get("/login/google/callback", params={"code": "x", "state": "y"}).status_code == 400
    )


def test_admin_linked_email_signs_in_to_that_client(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    provider.state.add_account("b-team@example.com")
    stranger = CookieClient(stack.url)
    assert stranger.login(provider.state, "b-team@example.com").status_code == 403
    admin = httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    b_id, a_id = clients["b"]["client_id"], clients["a"]["client_id"]
    r = admin.post(f"/admin/v1/clients/{b_id}/login-emails", json={"email": "B-Team@example.com"})
    assert r.status_code == 201, r.text
    assert r.json()["login_emails"] == ["b-team@example.com"]
    r = admin.post(f"/admin/v1/clients/{a_id}/login-emails", json={"email": "b-team@example.com"})
    assert r.status_code == 422  # one email, one client
    team = signed_in(stack, provider.state, "b-team@example.com")
    page = team.get("/dashboard").text
    assert b_id in page and "b-private" in page and a_id not in page
    events = admin.get("/admin/v1/events", params={"type": "client.login_email_linked"}).json()
    assert [e["client_id"] for e in events["events"]] == [b_id]


def test_stray_login_links_do_not_sign_a_user_out(
    stack: Stack, provider: RunningProvider, clients: dict[str, dict[str, str]]
) -> None:
    a = signed_in(stack, provider.state, "a@example.com")
    # A link someone else crafted, followed by a signed-in browser, changes nothing.
    assert a.get("/login/google/callback", params={"code": "x", "state": "y"}).status_code == 400
    r = a.get("/login/google")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    assert a.get("/dashboard").status_code == 200
