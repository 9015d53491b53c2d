"""Hostile input through a real ``vectorpanda up``: the documented 4xx, and nothing changed.

Issue 12's cases (lone surrogates, deep filters, huge integers with NaN, lax
coercion, trailing slashes) and issue 22's strict query strings. The stack runs
with small filter bounds so that the settings are shown to reach the edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 2
MAX_DEPTH = 3
MAX_OPERANDS = 40
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("strict"),
        workers=1,
        VP_MAX_FILTER_DEPTH=str(MAX_DEPTH),
        VP_MAX_FILTER_OPERANDS=str(MAX_OPERANDS),
    ) as s:
        yield s


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    api_key = stack.new_client("strict", tier="premium")
    with stack.client(api_key) as c:
        assert c.post("/v1/collections", json={"name": "c", "dimension": DIM}).status_code == 201
        rows = [{"id": f"v{i}", "values": [1.0, float(i)], "metadata": {"n": i}} for i in range(5)]
        assert c.post("/v1/collections/c/upsert", json={"vectors": rows}).status_code == 200
    return api_key


def expect(r: httpx.Response, status: int, code: str, *words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] == code
    assert err["request_id"] == r.headers["x-request-id"]
    for word in words:
        assert word in err["message"], err["message"]


def state(c: httpx.Client) -> tuple[int, dict[str, Any]]:
    """Vector count and every stored vector, to show a refused request changed nothing."""
    count = c.get("/v1/collections/c").json()["vector_count"]
    ids = [f"v{i}" for i in range(5)] + ["a", "big", "nan", "\U0001f600"]
    return count, c.post("/v1/collections/c/fetch", json={"ids": ids}).json()["vectors"]


def raw(c: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return c.post(path, content=body, headers=JSON)


def nested(op: str, levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"n": 1}
    for _ in range(levels):
        doc = {op: [doc]}
    return doc


SURROGATE_BODIES = [
    ("/v1/collections/c/upsert", rb'{"vectors": [{"id": "\ud800", "values": [1, 2]}]}'),
    ("/v1/collections/c/upsert", rb'{"ids": ["\udfff"], "values_b64": "AACAPwAAAEA="}'),
    ("/v1/collections/c/fetch", rb'{"ids": ["\ud800"]}'),
    ("/v1/collections/c/delete", rb'{"ids": ["v1", "\ud800"]}'),
    (
        "/v1/collections/c/upsert",
        rb'{"vectors": [{"id": "a", "values": [1, 2], "metadata": {"k": "x\ud800"}}]}',
    ),
    (
        "/v1/collections/c/upsert",
        rb'{"vectors": [{"id": "a", "values": [1, 2], "metadata": {"\udc00": "k"}}]}',
    ),
    ("/v1/collections/c/query", rb'{"vector": [1, 2], "filter": {"n": "\ud800"}}'),
    ("/v1/collections/c/delete", rb'{"filter": {"n": {"$in": ["\ud800"]}}}'),
    ("/v1/collections/c/update", rb'{"ids": ["v1"], "set": {"k": "\ud800"}}'),
    ("/v1/collections/c/count", rb'{"filter": {"n": "\ud800"}}'),
]


def test_lone_surrogates_are_refused_and_change_nothing(stack: Stack, key: str) -> None:
    with stack.client(key) as c:
        before = state(c)
        for path, body in SURROGATE_BODIES:
            expect(raw(c, path, body), 422, "invalid", "UTF-8")
        # raw bytes that are not UTF-8 at all
        expect(raw(c, "/v1/collections/c/fetch", b'{"ids": ["\xff"]}'), 422, "invalid")
        # a proper surrogate pair is a valid character and works
        pair = rb'{"vectors": [{"id": "\ud83d\ude00", "values": [1, 2]}]}'
        assert raw(c, "/v1/collections/c/upsert", pair).status_code == 200
        assert (
            "\U0001f600"
            in c.post("/v1/collections/c/fetch", json={"ids": ["\U0001f600"]}).json()["vectors"]
        )
        c.post("/v1/collections/c/delete", json={"ids": ["\U0001f600"]})
        assert state(c) == before


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 200, 300])
def test_deep_filters_are_refused(stack: Stack, key: str, levels: int) -> None:
    with stack.client(key) as c:
        before = state(c)
        query = {"vector": [1.0, 1.0], "filter": nested("$and", levels)}
        expect(c.post("/v1/collections/c/query", json=query), 422, "invalid", "VP_MAX_FILTER_DEPTH")
        delete = {"filter": nested("$or", levels)}
        expect(
            c.post("/v1/collections/c/delete", json=delete), 422, "invalid", "VP_MAX_FILTER_DEPTH"
        )
        for path, body in (
            ("count", {"filter": nested("$or", levels)}),
            ("list", {"filter": nested("$and", levels)}),
            ("update", {"filter": nested("$or", levels), "set": {"k": "v"}}),
        ):
            r = c.post(f"/v1/collections/c/{path}", json=body)
            expect(r, 422, "invalid", "VP_MAX_FILTER_DEPTH")
        assert state(c) == before


def test_filters_within_the_bounds_work(stack: Stack, key: str) -> None:
    with stack.client(key) as c:
        query = {"vector": [1.0, 1.0], "top_k": 10, "filter": nested("$and", MAX_DEPTH)}
        r = c.post("/v1/collections/c/query", json=query)
        assert r.status_code == 200, r.text
        assert [m["id"] for m in r.json()["matches"]] == ["v1"]
        operands = list(range(MAX_OPERANDS))
        r = c.post("/v1/collections/c/query", json={**query, "filter": {"n": {"$in": operands}}})
        assert r.status_code == 200 and len(r.json()["matches"]) == 5


def test_operand_counts_are_bounded(stack: Stack, key: str) -> None:
    with stack.client(key) as c:
        before = state(c)
        many = list(range(MAX_OPERANDS + 1))
        for path, body in (
            ("/v1/collections/c/query", {"vector": [1.0, 1.0], "filter": {"n": {"$nin": many}}}),
            ("/v1/collections/c/delete", {"filter": {"n": {"$in": many}}}),
            (
                "/v1/collections/c/delete",
                {"filter": {"$or": [{"n": {"$in": many[:30]}}, {"n": {"$in": many[30:]}}]}},
            ),
            ("/v1/collections/c/count", {"filter": {"n": {"$in": many}}}),
            ("/v1/collections/c/update", {"filter": {"n": {"$nin": many}}, "set": {"k": "v"}}),
        ):
            expect(c.post(path, json=body), 422, "invalid", "VP_MAX_FILTER_OPERANDS")
        assert state(c) == before


NON_STANDARD = [b"NaN", b"Infinity", b"-Infinity", b"1e400"]


@pytest.mark.parametrize("token", NON_STANDARD)
def test_non_standard_numbers_are_refused(stack: Stack, key: str, token: bytes) -> None:
    with stack.client(key) as c:
        before = state(c)
        meta = b'{"vectors": [{"id": "nan", "values": [1, 2], "metadata": {"x": %s}}]}' % token
        expect(raw(c, "/v1/collections/c/upsert", meta), 422, "invalid", "finite")
        # a huge integer beside the non-standard token: still the 422, never a 500
        both = (
            b'{"vectors": [{"id": "big", "values": [1, 2], '
            b'"metadata": {"big": 123456789012345678901234567890, "x": %s}}]}' % token
        )
        expect(raw(c, "/v1/collections/c/upsert", both), 422, "invalid")
        query = b'{"vector": [1, 2], "filter": {"n": {"$gt": %s}}}' % token
        expect(raw(c, "/v1/collections/c/query", query), 422, "invalid")
        assert state(c) == before


def test_huge_integers_are_stored_and_read_back_as_valid_json(stack: Stack, key: str) -> None:
    huge = b"123456789012345678901234567890"
    with stack.client(key) as c:
        body = b'{"vectors": [{"id": "big", "values": [1, 2], "metadata": {"big": %s}}]}' % huge
        assert raw(c, "/v1/collections/c/upsert", body).status_code == 200
        r = c.post("/v1/collections/c/fetch", json={"ids": ["big"]})
        stored = orjson.loads(r.content)["vectors"]["big"]["metadata"]["big"]  # strict JSON
        assert stored == pytest.approx(1.2345678901234568e29)
        # a filter with a huge integer operand is answered, never a 500
        for op in (b"$eq", b"$gt", b"$in"):
            operand = b"[%s]" % huge if op == b"$in" else huge
            q = b'{"vector": [1, 2], "filter": {"big": {"%s": %s}}}' % (op, operand)
            r = raw(c, "/v1/collections/c/query", q)
            assert r.status_code == 200, r.text
        u64 = b'{"vectors": [{"id": "big", "values": [1, 2], "metadata": {"u": %d}}]}' % (2**64 - 1)
        assert raw(c, "/v1/collections/c/upsert", u64).status_code == 200
        got = c.post("/v1/collections/c/fetch", json={"ids": ["big"]}).json()["vectors"]["big"]
        assert got["metadata"] == {"u": 2**64 - 1}
        c.post("/v1/collections/c/delete", json={"ids": ["big"]})


COERCIONS = [
    ("/v1/collections/c/query", {"vector": [1.0, 1.0], "top_k": "5"}, "top_k"),
    ("/v1/collections/c/query", {"vector": [1.0, 1.0], "top_k": True}, "top_k"),
    ("/v1/collections/c/query", {"vector": [1.0, 1.0], "top_k": 5.0}, "top_k"),
    ("/v1/collections/c/query", {"vector": ["1", 1.0]}, "vector"),
    ("/v1/collections/c/query", {"vector": [1.0, 1.0], "include_metadata": "true"}, "include"),
    ("/v1/collections/c/upsert", {"vectors": [{"id": 5, "values": [1.0, 1.0]}]}, "id"),
    ("/v1/collections/c/upsert", {"vectors": [{"id": "a", "values": [True, 1.0]}]}, "values"),
    ("/v1/collections/c/fetch", {"ids": [1]}, "ids"),
    ("/v1/collections", {"name": "d", "dimension": "4"}, "dimension"),
    ("/v1/collections", {"name": "d", "dimension": True}, "dimension"),
]


def test_no_type_coercion(stack: Stack, key: str) -> None:
    with stack.client(key) as c:
        before = state(c)
        for path, body, field in COERCIONS:
            expect(c.post(path, json=body), 422, "invalid", field)
        names = [x["name"] for x in c.get("/v1/collections").json()["collections"]]
        assert names == ["c"]
        assert state(c) == before


def test_nested_metadata_gets_one_clear_sentence(stack: Stack, key: str) -> None:
    with stack.client(key) as c:
        before = state(c)
        body = {"vectors": [{"id": "a", "values": [1.0, 1.0], "metadata": {"deep": {"x": 1}}}]}
        r = c.post("/v1/collections/c/upsert", json=body)
        expect(r, 422, "invalid", "flat object", "'deep'")
        assert r.json()["error"]["message"].count("Input should") == 0  # not a union dump
        update = {"ids": ["v1"], "set": {"deep": [{"x": 1}]}}
        r = c.post("/v1/collections/c/update", json=update)
        expect(r, 422, "invalid", "flat object", "'deep'")
        assert state(c) == before


def test_admin_plane_is_strict_too(stack: Stack, key: str) -> None:
    with stack.admin() as admin:
        head = admin.get("/admin/v1/events", params={"limit": 1000}).json()["events"]
        for body in (
            {"name": "x", "email": "x@example.com", "tier": True},
            {"name": 5, "email": "x@example.com"},
        ):
            expect(admin.post("/admin/v1/clients", json=body), 422, "invalid")
        expect(
            raw(admin, "/admin/v1/clients", rb'{"name": "\ud800", "email": "x@example.com"}'),
            422,
            "invalid",
            "UTF-8",
        )
        cid = admin.get("/admin/v1/clients").json()["clients"][0]["client_id"]
        billing = {
            "kind": "invoice_issued",
            "amount_cents": "5",
            "currency": "EUR",
            "reference": "r",
        }
        expect(
            admin.post(f"/admin/v1/clients/{cid}/billing", json=billing),
            422,
            "invalid",
            "amount_cents",
        )
        anomaly = b'{"metric": "requests", "observed": NaN, "baseline": 1, "window_hours": 1}'
        expect(raw(admin, f"/admin/v1/clients/{cid}/anomalies", anomaly), 422, "invalid")
        expect(raw(admin, "/admin/v1/clients", b'{"name": '), 400, "bad_request")
        # found by schemathesis: a sequence number past SQLite's 64-bit integers
        expect(admin.get(f"/admin/v1/events?after_seq={2**70}"), 422, "invalid", "after_seq")
        assert admin.get("/admin/v1/events", params={"limit": 1000}).json()["events"] == head


TRAILING = [
    ("GET", "/v1/collections/c/"),
    ("GET", "/v1/collections/"),
    ("DELETE", "/v1/collections/c/"),
    ("POST", "/v1/collections/c/query/"),
    ("GET", "/v1/usage/"),
]


def test_trailing_slash_is_a_404_never_a_redirect(stack: Stack, key: str) -> None:
    with stack.client(key) as c, stack.admin() as admin:
        before = state(c)
        for method, path in TRAILING:
            body = {"vector": [1.0, 1.0]} if method == "POST" else None
            expect(c.request(method, path, json=body), 404, "not_found", "trailing slash")
        expect(admin.get("/admin/v1/clients/"), 404, "not_found")
        assert state(c) == before  # the DELETE with a slash deleted nothing


def test_unknown_query_parameters_are_refused(stack: Stack, key: str) -> None:
    with stack.client(key) as c, stack.admin() as admin:
        cid = admin.get("/admin/v1/clients").json()["clients"][0]["client_id"]
        expect(admin.get("/admin/v1/events?until=x"), 422, "invalid", "'until'")
        expect(admin.get(f"/admin/v1/clients/{cid}?as_of=x"), 422, "invalid", "'as_of'")
        expect(admin.get("/admin/v1/usage?since=2020-01-01T00:00:00Z&x=1"), 422, "invalid", "'x'")
        expect(c.get("/v1/collections?foo=1"), 422, "invalid", "'foo'")
        expect(c.get("/v1/collections/c?include=all"), 422, "invalid", "'include'")
        before = state(c)
        expect(c.delete("/v1/collections/c?force=true"), 422, "invalid", "'force'")
        expect(
            c.post("/v1/collections/c/delete?dry_run=1", json={"ids": ["v1"]}),
            422,
            "invalid",
            "'dry_run'",
        )
        assert state(c) == before
        # declared parameters still work
        r = admin.get("/admin/v1/events", params={"after_seq": 0, "limit": 1})
        assert r.status_code == 200 and len(r.json()["events"]) == 1
        # dashboard pages keep their own parameters (OAuth callbacks, notices)
        assert httpx.get(f"{stack.url}/login?expired=1").status_code == 200
        callback = httpx.get(f"{stack.url}/login/github/callback?code=x&state=y")
        assert callback.status_code != 422


def test_no_request_was_a_server_error(stack: Stack, key: str) -> None:
    """Runs last in this module: every refusal above was a 4xx, none a defect."""
    text = httpx.get(f"{stack.url}/metrics").text
    statuses = [
        line
        for line in text.splitlines()
        if line.startswith("vectorpanda_http_requests_total") and 'status="5' in line
    ]
    assert statuses == []
    assert "vectorpanda_internal_errors_total{" not in text


def test_a_repeated_id_in_one_upsert_is_refused_by_name(stack: Stack, key: str) -> None:
    with stack.client(key) as c:
        before = state(c)
        rows = [{"id": "twice", "values": [1.0, 2.0]}, {"id": "twice", "values": [3.0, 4.0]}]
        r = c.post("/v1/collections/c/upsert", json={"vectors": rows})
        expect(r, 422, "invalid", "'twice'", "more than once")
        packed = {"ids": ["v9", "v9"], "values_b64": "AACAPwAAAEAAAEBAAACAQA=="}
        expect(c.post("/v1/collections/c/upsert", json=packed), 422, "invalid", "'v9'")
        assert state(c) == before
