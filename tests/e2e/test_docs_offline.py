"""``/docs`` in headless Chromium with every outside address blocked: it still renders."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.e2e.test_dashboard_browser import ARTIFACTS, browser  # noqa: F401 (fixture)
from tests.stack import Stack

pytestmark = pytest.mark.e2e

LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}


def test_the_api_reference_renders_with_no_network(stack: Stack, browser) -> None:  # noqa: F811
    context = browser.new_context()
    blocked: list[str] = []

    def only_loopback(route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.goto(f"{stack.url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    operations = page.locator(".opblock").count()
    assert operations >= 20, operations
    assert page.locator("button.authorize").count() >= 1  # the bearer schemes are declared
    assert page.get_by_text("/v1/collections/{name}/query").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "docs-offline.png"), full_page=False)
    assert not [u for u in blocked if not u.startswith("data:")], blocked
    context.close()
