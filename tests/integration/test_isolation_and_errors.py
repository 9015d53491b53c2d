"""Isolation between clients and bad input, through a real ``vectorpanda up``."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

DIM = 8


@pytest.fixture(scope="module")
def two_clients(stack: Stack) -> tuple[str, str]:
    key_a = stack.new_client("iso-a")
    key_b = stack.new_client("iso-b")
    with stack.client(key_a) as a:
        assert (
            a.post("/v1/collections", json={"name": "secret", "dimension": DIM}).status_code == 201
        )
        rows = [
            {"id": f"s{i}", "values": [float(i + 1)] * DIM, "metadata": {"pii": "yes"}}
            for i in range(5)
        ]
        assert a.post("/v1/collections/secret/upsert", json={"vectors": rows}).status_code == 200
    return key_a, key_b


ROUTES = [
    ("GET", "/v1/collections/{name}", None),
    ("DELETE", "/v1/collections/{name}", None),
    ("POST", "/v1/collections/{name}/upsert", {"vectors": [{"id": "x", "values": [0.5] * DIM}]}),
    ("POST", "/v1/collections/{name}/query", {"vector": [1.0] * DIM}),
    ("POST", "/v1/collections/{name}/fetch", {"ids": ["s1"]}),
    ("POST", "/v1/collections/{name}/delete", {"ids": ["s1"]}),
    ("POST", "/v1/collections/{name}/list", {"include_metadata": True}),
    ("POST", "/v1/collections/{name}/count", {"filter": {"pii": "yes"}}),
    ("POST", "/v1/collections/{name}/update", {"filter": {}, "unset": ["pii"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_foreign_collection_is_indistinguishable_from_missing(
    stack: Stack, two_clients: tuple[str, str], method: str, path: str, body: dict | None
) -> None:
    key_a, key_b = two_clients
    with stack.client(key_b) as b:
        # B owns a collection named like A's missing one, to compare like with like
        foreign = b.request(method, path.format(name="secret"), json=body)
        missing = b.request(method, path.format(name="secret-nope"), json=body)
    assert foreign.status_code == missing.status_code == 404
    f_err, m_err = foreign.json()["error"], missing.json()["error"]
    assert f_err["code"] == m_err["code"] == "not_found"
    assert f_err["message"] == m_err["message"].replace("secret-nope", "secret")
    # A's data is untouched by B's attempts
    with stack.client(key_a) as a:
        assert a.get("/v1/collections/secret").json()["vector_count"] == 5
        got = a.post("/v1/collections/secret/fetch", json={"ids": ["s1"]}).json()["vectors"]
        assert "s1" in got


def test_listing_shows_only_own_collections(stack: Stack, two_clients: tuple[str, str]) -> None:
    _, key_b = two_clients
    with stack.client(key_b) as b:
        b.post("/v1/collections", json={"name": "mine", "dimension": DIM})
        names = [c["name"] for c in b.get("/v1/collections").json()["collections"]]
    assert names == ["mine"]


def expect(r, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["request_id"] == r.headers["x-request-id"]


def test_bad_input_is_refused_and_changes_nothing(
    stack: Stack, two_clients: tuple[str, str]
) -> None:
    key_a, _ = two_clients
    url = "/v1/collections/secret/upsert"
    good = [1.0] * DIM
    with stack.client(key_a) as a:
        before = a.get("/v1/collections/secret").json()["vector_count"]
        expect(
            a.post(url, json={"vectors": [{"id": "w", "values": [1.0] * (DIM - 1)}]}),
            422,
            "invalid",
        )
        expect(
            a.post(
                url,
                content=b'{"vectors": [{"id": "n", "values": [NaN, 1,1,1,1,1,1,1]}]}',
                headers={"content-type": "application/json"},
            ),
            422,
            "invalid",
        )
        expect(
            a.post(
                url,
                content=b'{"vectors": [{"id": "n", "values": [Infinity, 1,1,1,1,1,1,1]}]}',
                headers={"content-type": "application/json"},
            ),
            422,
            "invalid",
        )
        expect(
            a.post(url, json={"vectors": [{"id": "u", "values": good}], "extra": 1}), 422, "invalid"
        )
        expect(
            a.post(url, json={"vectors": [{"id": "u", "values": good, "colour": "red"}]}),
            422,
            "invalid",
        )
        expect(
            a.post(url, content=b'{"vectors": [', headers={"content-type": "application/json"}),
            400,
            "bad_request",
        )
        expect(a.post(url, json={"ids": ["b"], "values_b64": "@@not base64@@"}), 400, "bad_request")
        expect(
            a.post(url, json={"ids": ["b"], "values_b64": base64.b64encode(b"abc").decode()}),
            400,
            "bad_request",
        )
        seven = base64.b64encode(np.ones(7, dtype="<f4").tobytes()).decode()
        expect(a.post(url, json={"ids": ["b1", "b2"], "values_b64": seven}), 422, "invalid")
        nan = base64.b64encode(np.full(DIM, np.nan, dtype="<f4").tobytes()).decode()
        expect(a.post(url, json={"ids": ["b"], "values_b64": nan}), 422, "invalid")
        too_many = [{"id": f"m{i}", "values": good} for i in range(1001)]
        expect(a.post(url, json={"vectors": too_many}), 413, "payload_too_large")
        expect(
            a.post("/v1/collections/secret/fetch", json={"ids": [f"i{i}" for i in range(1001)]}),
            413,
            "payload_too_large",
        )
        expect(a.post(url, json={"vectors": [{"id": "x" * 257, "values": good}]}), 422, "invalid")
        expect(
            a.post(
                url,
                json={"vectors": [{"id": "d", "values": good, "metadata": {"nested": {"a": 1}}}]},
            ),
            422,
            "invalid",
        )
        expect(
            a.post("/v1/collections/secret/query", json={"vector": good, "top_k": 0}),
            422,
            "invalid",
        )
        expect(
            a.post("/v1/collections/secret/query", json={"vector": good, "top_k": 1001}),
            422,
            "invalid",
        )
        expect(
            a.post(
                "/v1/collections/secret/query",
                json={"vector": good, "filter": {"a": {"$regex": "x"}}},
            ),
            422,
            "invalid",
        )
        expect(
            a.post("/v1/collections", json={"name": "Bad Name!", "dimension": 4}), 422, "invalid"
        )
        expect(a.post("/v1/collections", json={"name": "ok", "dimension": 5000}), 422, "invalid")
        expect(
            a.post("/v1/collections", json={"name": "ok", "dimension": 4, "metric": "hamming"}),
            422,
            "invalid",
        )
        expect(
            a.post(
                "/v1/collections",
                json={"name": "h", "dimension": 4, "index": "hnsw", "hnsw": {"m": 1}},
            ),
            422,
            "invalid",
        )
        expect(
            a.post("/v1/collections", json={"name": "secret", "dimension": DIM}), 409, "conflict"
        )
        after = a.get("/v1/collections/secret").json()["vector_count"]
        assert after == before
        names = [c["name"] for c in a.get("/v1/collections").json()["collections"]]
        assert names == ["secret"]


def test_oversized_body_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.stack import running_stack

    with running_stack(tmp_path_factory.mktemp("small"), workers=1, VP_MAX_BODY_BYTES="4096") as s:
        key = s.new_client("big")
        with s.client(key) as c:
            c.post("/v1/collections", json={"name": "c", "dimension": 4})
            rows = [{"id": f"r{i}", "values": [1.0, 2.0, 3.0, 4.0]} for i in range(300)]
            expect(
                c.post("/v1/collections/c/upsert", json={"vectors": rows}), 413, "payload_too_large"
            )
            assert c.get("/v1/collections/c").json()["vector_count"] == 0


def test_credentials(stack: Stack, two_clients: tuple[str, str]) -> None:
    key_a, _ = two_clients
    import httpx

    bodies = set()
    for auth in (
        None,
        "Bearer",
        "Bearer vp_bad",
        "Basic abc",
        f"Bearer {key_a[:-2]}xx",
        f"Bearer {stack.admin_token}",
    ):
        headers = {"Authorization": auth} if auth else {}
        r = httpx.get(f"{stack.url}/v1/collections", headers=headers)
        expect(r, 401, "unauthorized")
        bodies.add(r.json()["error"]["message"])
    assert len(bodies) == 1  # one body for every kind of bad credential
    # a data key never works on admin routes
    expect(
        httpx.get(f"{stack.url}/admin/v1/clients", headers={"Authorization": f"Bearer {key_a}"}),
        401,
        "unauthorized",
    )
    # scopes
    read_only = stack.new_client("reader", scopes=("read",))
    with stack.client(read_only) as r:
        assert r.get("/v1/collections").status_code == 200
        expect(r.post("/v1/collections", json={"name": "x", "dimension": 4}), 403, "forbidden")
    # revocation takes effect at once
    with stack.admin() as admin:
        cid = admin.post(
            "/admin/v1/clients", json={"name": "rev", "email": "rev@example.com"}
        ).json()["client_id"]
        issued = admin.post(f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read"]}).json()
        with stack.client(issued["api_key"]) as c:
            assert c.get("/v1/collections").status_code == 200
            assert (
                admin.delete(f"/admin/v1/clients/{cid}/keys/{issued['key_id']}").status_code == 204
            )
            expect(c.get("/v1/collections"), 401, "unauthorized")
