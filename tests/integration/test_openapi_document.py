"""The OpenAPI document as a user's tools read it: security schemes on every operation."""

from __future__ import annotations

import httpx
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_every_operation_states_its_credential_or_that_it_is_public(stack: Stack) -> None:
    spec = httpx.get(f"{stack.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "http", "scheme": "bearer"}
    assert schemes["AdminToken"]["scheme"] == "bearer"
    seen = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            seen += 1
            assert "security" in op, (method, path)
            if path.startswith("/v1/"):
                assert op["security"] == [{"ApiKey": []}], (method, path)
            elif path.startswith("/admin/v1/"):
                assert op["security"] == [{"AdminToken": []}], (method, path)
            else:
                assert op["security"] == [], (method, path)  # explicitly public
    assert seen >= 30


def test_docs_are_served_from_the_package(stack: Stack) -> None:
    page = httpx.get(f"{stack.url}/docs")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    js = httpx.get(f"{stack.url}/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
