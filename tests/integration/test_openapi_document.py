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


def _schema(spec: dict, schema: dict) -> dict:
    for alternative in schema.get("anyOf", []):
        if "$ref" in alternative:
            schema = alternative
    if "$ref" in schema:
        return spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_body_has_an_example_and_every_error_is_documented(stack: Stack) -> None:
    spec = httpx.get(f"{stack.url}/openapi.json").json()
    error_body = spec["components"]["schemas"]["ErrorBody"]
    assert "error" in error_body["properties"]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            body = op.get("requestBody")
            if body is not None:
                content = body["content"]["application/json"]
                schema = _schema(spec, content.get("schema", {}))
                examples = content.get("examples") or schema.get("examples")
                assert examples, f"{method} {path}: request body without an example"
            if path.startswith(("/v1/", "/admin/v1/")):
                responses = op["responses"]
                for status in ("401", "422"):
                    assert status in responses, (method, path, status)
                    ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (method, path, status, ref)
    query = spec["paths"]["/v1/collections/{name}/query"]["post"]
    statuses = set(query["responses"])
    assert {"401", "403", "404", "413", "422", "423", "429", "503"} <= statuses, statuses
    examples = _schema(spec, query["requestBody"]["content"]["application/json"]["schema"])
    assert any("filter" in e for e in examples["examples"])  # filters are shown too
