"""The dashboard in headless Chromium: log in through the loopback OAuth provider,
see collections and the usage chart, create a key and use it, revoke it, log out.

Runs a ``vectorpanda up`` over plain http on ``localhost`` (Chromium treats it as a
secure context, so the ``__Host-`` Secure cookie is kept). Screenshots go to
``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.oauth_provider import (
    COOKIE,
    OPERATOR_EMAIL,
    RunningProvider,
    dashboard_stack,
)
from tests.stack import Stack

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALICE, BOB, STRANGER = "alice@example.com", "bob@example.com", "stranger@example.com"


@pytest.fixture(scope="module")
def provider() -> Iterator[RunningProvider]:
    running = RunningProvider()
    for email in (ALICE, BOB, STRANGER, OPERATOR_EMAIL):
        running.state.add_account(email)
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(provider: RunningProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with dashboard_stack(tmp_path_factory.mktemp("vp-dash"), provider.state) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if shutil.which(CHROMIUM) is None:
        reason = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def seed(stack: Stack, name: str, email: str, collection: str, n: int) -> tuple[str, str]:
    """A client with one collection of ``n`` 4-d vectors; returns (client_id, admin-made key)."""
    with httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}
    ) as admin:
        r = admin.post("/admin/v1/clients", json={"name": name, "email": email})
        assert r.status_code == 201, r.text
        cid = r.json()["client_id"]
        r = admin.post(
            f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read", "write", "manage"]}
        )
        key = r.json()["api_key"]
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}) as api:
        r = api.post("/v1/collections", json={"name": collection, "dimension": 4, "metric": "l2"})
        assert r.status_code == 201, r.text
        vectors = [{"id": f"v{i}", "values": [float(i), 0.0, 1.0, 2.0]} for i in range(n)]
        assert api.post(
            f"/v1/collections/{collection}/upsert", json={"vectors": vectors}
        ).is_success
    return cid, key


def utc_today() -> str:
    return datetime.now(UTC).date().isoformat()


def login(page: Any, stack: Stack, email: str) -> None:
    page.goto(f"{stack.url}/login")
    page.click("#login-google")
    page.fill("#email", email)
    page.click("#approve")


def test_client_journey(browser: Any, stack: Stack, provider: RunningProvider) -> None:
    alice_id, _ = seed(stack, "alice", ALICE, "alice-docs", 3)
    seed(stack, "bob", BOB, "bob-secret-notes", 5)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    page.goto(f"{stack.url}/login")
    page.screenshot(path=str(ARTIFACTS / "login.png"))
    day_before = utc_today()
    login(page, stack, ALICE)
    page.wait_for_url(f"{stack.url}/dashboard")
    assert page.text_content("#client-name") == "alice"
    assert page.text_content("#client-id") == alice_id
    assert page.text_content("#status") == "active"

    # Collections with counts; the usage chart is an inline SVG with today's live count.
    row = page.locator("#collections tbody tr", has_text="alice-docs")
    assert row.locator("td").nth(1).text_content() == "3"
    chart = page.locator("#usage svg.chart").first
    assert "Vectors stored" in (chart.get_attribute("aria-label") or "")
    # The last bar is the server's "today" (UTC) when it rendered the page, which may be
    # the day before ours if midnight fell in between.
    today_bar = chart.locator("rect.bar").last
    assert today_bar.get_attribute("data-day") in {day_before, utc_today()}
    assert today_bar.get_attribute("data-value") == "3"
    assert "bob-secret-notes" not in page.content()
    # Usage against the tier's quotas (alice is on the free tier).
    assert page.text_content("#quota-collections") == "1 of 5"
    assert page.text_content("#quota-vectors") == "3 of 100,000"
    assert page.text_content("#quota-rate") == "25/s (burst 50)"
    page.screenshot(path=str(ARTIFACTS / "client.png"), full_page=True)

    (cookie,) = [c for c in context.cookies() if c["name"] == COOKIE]
    assert cookie["secure"] and cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    assert cookie["domain"] == "localhost"  # host-only, as __Host- demands

    # Create a key: the secret is shown once, and works against the API.
    page.fill("#create-key input[name=label]", "from-browser")
    page.check("#create-key input[name=scope_write]")
    page.click("#create-key button[type=submit]")
    secret = (page.text_content("#new-key") or "").strip()
    assert secret.startswith("vp_")
    page.screenshot(path=str(ARTIFACTS / "key-created.png"), full_page=True)
    key_id = secret.split("_")[1]
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {secret}"}) as api:
        r = api.get("/v1/collections")
        assert r.status_code == 200
        assert [c["name"] for c in r.json()["collections"]] == ["alice-docs"]
        page.goto(f"{stack.url}/dashboard")
        assert page.locator("#new-key").count() == 0  # never shown again
        assert secret not in page.content()

        # Revoke it in the browser; the API refuses it from then on.
        page.locator(f'tr[data-key-id="{key_id}"] button', has_text="Revoke").click()
        page.wait_for_url(f"{stack.url}/dashboard")
        assert "revoked" in (page.text_content(f'tr[data-key-id="{key_id}"]') or "")
        r = api.get("/v1/collections")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"

    # The client's own audit trail shows the browser's actions, by the login email.
    for _ in range(50):
        page.reload()
        trail = page.text_content("#trail") or ""
        if "revoked" in trail.lower():
            break
        page.wait_for_timeout(100)
    assert ALICE in trail and key_id in trail

    # Log out: back at /login, and the old session id is dead server-side.
    page.click("header form button")
    page.wait_for_url(f"{stack.url}/login?bye=1")
    assert "signed out" in (page.text_content("main") or "")
    assert not [c for c in context.cookies() if c["name"] == COOKIE]
    r = httpx.get(f"{stack.url}/dashboard", headers={"Cookie": f"{COOKIE}={cookie['value']}"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    page.goto(f"{stack.url}/dashboard")
    assert page.url.startswith(f"{stack.url}/login")
    context.close()


def test_phone_width_and_unknown_email(browser: Any, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    login(page, stack, STRANGER)
    assert "No account for this email" in (page.text_content("h1") or "")
    assert STRANGER in (page.text_content("main") or "")
    page.screenshot(path=str(ARTIFACTS / "unknown-email.png"))
    assert not [c for c in context.cookies() if c["name"] == COOKIE]

    login(page, stack, ALICE)
    page.wait_for_url(f"{stack.url}/dashboard")
    page.screenshot(path=str(ARTIFACTS / "client-phone.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    context.close()


def test_operator_view(browser: Any, stack: Stack) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    login(page, stack, OPERATOR_EMAIL)
    page.wait_for_url(f"{stack.url}/dashboard/operator")
    clients = page.text_content("#clients") or ""
    assert "alice" in clients and "bob" in clients
    assert "live" in (page.text_content("#workers") or "")
    page.screenshot(path=str(ARTIFACTS / "operator.png"), full_page=True)

    page.click("#clients >> text=alice")
    page.select_option("#operate select[name=tier]", "standard")
    page.fill("#operate form[action$='/tier'] input[name=reason]", "upgrade agreed by phone")
    page.click("#operate button:has-text('Change tier')")
    assert page.text_content("#tier") == "standard"
    page.fill("#operate form[action$='/pause'] input[name=reason]", "card expired")
    page.click("#operate button:has-text('Pause')")
    assert page.text_content("#status") == "paused"
    assert "This account is paused" in (page.text_content(".banner.paused") or "")
    assert page.text_content("#vector-total") == "3"  # described from cold storage
    page.screenshot(path=str(ARTIFACTS / "operator-client-paused.png"), full_page=True)
    page.fill("#operate form[action$='/resume'] input[name=reason]", "card updated")
    page.click("#operate button:has-text('Resume')")
    assert page.text_content("#status") == "active"

    with httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_token}"}
    ) as admin:
        events = admin.get("/admin/v1/events", params={"limit": 1000}).json()["events"]
    ours = [e for e in events if e["actor"] == OPERATOR_EMAIL]
    assert [e["type"] for e in ours] == ["client.tier_changed", "client.paused", "client.resumed"]
    assert ours[0]["data"]["reason"] == "upgrade agreed by phone"
    assert ours[1]["data"]["reason"] == "card expired"

    page.goto(f"{stack.url}/dashboard/operator/audit?type=client.tier_changed")
    audit = page.text_content("#audit") or ""
    assert OPERATOR_EMAIL in audit
    assert "alice" in audit  # the client's name beside its id
    page.screenshot(path=str(ARTIFACTS / "operator-audit.png"), full_page=True)

    # On a phone the whole audit table fits: no element inside it sticks out or clips.
    context.close()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    login(page, stack, OPERATOR_EMAIL)
    page.wait_for_url(f"{stack.url}/dashboard/operator")
    page.goto(f"{stack.url}/dashboard/operator/audit")
    clipped = page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const out = [];
          for (const el of document.querySelectorAll('#audit, #audit *')) {
            const r = el.getBoundingClientRect();
            if (r.width === 0) continue;
            if (r.right > width + 0.5 || r.left < -0.5 || el.scrollWidth > el.clientWidth + 1)
              out.push(el.tagName + ' ' + (el.textContent || '').slice(0, 40));
          }
          return out;
        }"""
    )
    page.screenshot(path=str(ARTIFACTS / "operator-audit-phone.png"), full_page=True)
    assert not clipped, clipped
    context.close()


def test_a_login_at_another_name_for_the_server_says_so(browser: Any, stack: Stack) -> None:
    other = stack.url.replace("localhost", "127.0.0.1")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{other}/login")
    notice = page.text_content(".notice") or ""
    assert "sign-in works only at " + stack.url in notice
    page.click("#login-google")
    assert "Sign in at the service's own address" in (page.text_content("h1") or "")
    assert "expired" not in (page.text_content("main") or "")
    context.close()
