"""The operator audit page's "as of" field (issue 17), against a real ``vectorpanda up``."""

from __future__ import annotations

from collections.abc import Iterator

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
    with dashboard_stack(tmp_path_factory.mktemp("vp-history-page"), provider.state) as s:
        yield s


def test_the_audit_page_shows_a_client_as_of_a_moment(
    stack: Stack, provider: RunningProvider
) -> None:
    with stack.admin() as admin:
        cid = admin.post(
            "/admin/v1/clients", json={"name": "Acme", "email": "acme@example.com"}
        ).json()["client_id"]
        key = admin.post(f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read"]}).json()
        body = {"tier": "premium", "reason": "signed the contract"}
        assert admin.post(f"/admin/v1/clients/{cid}/tier", json=body).status_code == 200
        assert admin.delete(f"/admin/v1/clients/{cid}/keys/{key['key_id']}").status_code == 204
        assert admin.post(f"/admin/v1/clients/{cid}/pause", json={"reason": "x"}).status_code == 200
        events = admin.get("/admin/v1/events", params={"client_id": cid}).json()["events"]
    created, issued, tiered = events[0], events[1], events[2]
    assert tiered["type"] == "client.tier_changed"

    operator = CookieClient(stack.url)
    try:
        assert operator.login(provider.state, OPERATOR_EMAIL).status_code == 303

        def page(as_of: str) -> str:
            r = operator.get("/dashboard/operator/audit", params={"client_id": cid, "as_of": as_of})
            assert r.status_code == 200, r.text[-2000:]
            return r.text

        # Just after the key was issued: free tier, active, the key not yet revoked.
        html = page(issued["occurred_at"])
        assert '<dd id="as-of-tier">free</dd>' in html
        assert 'id="as-of-status" class="status-active">active' in html
        assert issued["data"]["key_id"] in html and issued["hash"] in html
        # At the tier change itself: premium, and its hash is the last one folded.
        html = page(tiered["occurred_at"])
        assert '<dd id="as-of-tier">premium</dd>' in html and tiered["hash"] in html
        # A browser's datetime-local value (minutes, no zone) is read as UTC: far ahead = now.
        html = page("2099-01-01T00:00")
        assert 'id="as-of-status" class="status-paused">paused' in html
        assert events[-1]["hash"] in html
        # Before the client existed, and nonsense, are explained, not a server error.
        html = page(created["occurred_at"][:4] + "-01-01T00:00:00Z")
        assert 'id="as-of-error"' in html and "existed" in html
        assert 'id="as-of-state"' not in html
        html = page("last tuesday")
        assert 'id="as-of-error"' in html and "RFC 3339" in html
        # Without the field the page is the plain audit trail.
        plain = operator.get("/dashboard/operator/audit", params={"client_id": cid}).text
        assert 'id="as-of-state"' not in plain and 'id="as-of"' in plain
    finally:
        operator.close()
