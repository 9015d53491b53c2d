"""The data plane through a real ``vectorpanda up`` (coordinator + 2 worker processes)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(7)


def brute_force(
    metric: str, data: np.ndarray, q: np.ndarray, k: int
) -> tuple[list[int], list[float]]:
    if metric == "l2":
        scores = ((data - q) ** 2).sum(axis=1)
        order = np.argsort(scores, kind="stable")[:k]
    else:
        if metric == "cosine":
            data = data / np.linalg.norm(data, axis=1, keepdims=True)
            q = q / np.linalg.norm(q)
        scores = data @ q
        order = np.argsort(-scores, kind="stable")[:k]
    return order.tolist(), scores[order].tolist()


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_two_clients_upsert_and_query_each_metric(stack: Stack, metric: str) -> None:
    dim = 16
    for owner in ("alpha", "beta"):
        key = stack.new_client(f"{owner}-{metric}")
        data = RNG.standard_normal((200, dim)).astype(np.float32)
        ids = [f"{owner}-{i}" for i in range(len(data))]
        with stack.client(key) as c:
            r = c.post("/v1/collections", json={"name": "docs", "dimension": dim, "metric": metric})
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["name"] == "docs" and body["dimension"] == dim and body["metric"] == metric
            assert body["index"] == "flat" and body["vector_count"] == 0 and body["created_at"]
            # half as JSON rows with metadata, half as packed base64
            rows = [
                {"id": ids[i], "values": data[i].tolist(), "metadata": {"i": i, "owner": owner}}
                for i in range(100)
            ]
            r = c.post("/v1/collections/docs/upsert", json={"vectors": rows})
            assert r.status_code == 200, r.text
            assert r.json() == {"upserted": 100}
            packed = base64.b64encode(data[100:].astype("<f4").tobytes()).decode()
            r = c.post(
                "/v1/collections/docs/upsert",
                json={
                    "ids": ids[100:],
                    "values_b64": packed,
                    "metadata": [{"i": i} for i in range(100, 200)],
                },
            )
            assert r.status_code == 200, r.text
            assert c.get("/v1/collections/docs").json()["vector_count"] == 200

            # a vector queried by its own values comes back first (for cosine and l2)
            for i in (0, 57, 150):
                r = c.post(
                    "/v1/collections/docs/query",
                    json={"vector": data[i].tolist(), "top_k": 5, "include_metadata": True},
                )
                assert r.status_code == 200, r.text
                matches = r.json()["matches"]
                want_order, want_scores = brute_force(metric, data, data[i], 5)
                assert [m["id"] for m in matches] == [ids[j] for j in want_order]
                np.testing.assert_allclose(
                    [m["score"] for m in matches], want_scores, rtol=1e-4, atol=1e-4
                )
                if metric != "ip":
                    assert matches[0]["id"] == ids[i]
                    expected_self = 0.0 if metric == "l2" else 1.0
                    assert matches[0]["score"] == pytest.approx(expected_self, abs=1e-4)
                assert matches[0]["metadata"]["i"] == want_order[0]

            # batch query answers one result list per query vector
            r = c.post(
                "/v1/collections/docs/query", json={"vectors": data[:3].tolist(), "top_k": 3}
            )
            results = r.json()["results"]
            assert len(results) == 3
            for qi, res in enumerate(results):
                want_order, _ = brute_force(metric, data, data[qi], 3)
                assert [m["id"] for m in res["matches"]] == [ids[j] for j in want_order]


def test_fetch_returns_exact_values_and_metadata(stack: Stack) -> None:
    key = stack.new_client("fetcher")
    data = RNG.standard_normal((10, 8)).astype(np.float32)
    with stack.client(key) as c:
        c.post("/v1/collections", json={"name": "f", "dimension": 8, "metric": "cosine"})
        packed = base64.b64encode(data.tobytes()).decode()
        ids = [f"v{i}" for i in range(10)]
        meta = [{"tag": f"t{i}", "flags": ["a", "b"], "ok": True} for i in range(10)]
        assert (
            c.post(
                "/v1/collections/f/upsert",
                json={"ids": ids, "values_b64": packed, "metadata": meta},
            ).status_code
            == 200
        )
        r = c.post("/v1/collections/f/fetch", json={"ids": ["v3", "missing", "v0"]})
        assert r.status_code == 200
        vectors = r.json()["vectors"]
        assert set(vectors) == {"v3", "v0"}
        assert np.array_equal(np.asarray(vectors["v3"]["values"], dtype=np.float32), data[3])
        assert vectors["v3"]["metadata"] == meta[3]
        # upsert replaces; delete removes; neither returns the old vector again
        new = (data[3] * -1).tolist()
        c.post("/v1/collections/f/upsert", json={"vectors": [{"id": "v3", "values": new}]})
        got = c.post("/v1/collections/f/fetch", json={"ids": ["v3"]}).json()["vectors"]["v3"]
        assert np.array_equal(
            np.asarray(got["values"], dtype=np.float32), np.asarray(new, dtype=np.float32)
        )
        r = c.post("/v1/collections/f/delete", json={"ids": ["v0", "v1", "nope"]})
        assert r.json() == {"deleted": 2}
        r = c.post("/v1/collections/f/query", json={"vector": data[0].tolist(), "top_k": 10})
        assert "v0" not in [m["id"] for m in r.json()["matches"]]
        assert c.get("/v1/collections/f").json()["vector_count"] == 8
        r = c.post(
            "/v1/collections/f/query",
            json={"vector": data[2].tolist(), "top_k": 1, "include_values": True},
        )
        m = r.json()["matches"][0]
        assert m["id"] == "v2" and np.array_equal(
            np.asarray(m["values"], dtype=np.float32), data[2]
        )


def test_collections_list_delete_and_usage(stack: Stack) -> None:
    key = stack.new_client("lister")
    with stack.client(key) as c:
        for name in ("b-two", "a-one"):
            assert c.post("/v1/collections", json={"name": name, "dimension": 4}).status_code == 201
        names = [col["name"] for col in c.get("/v1/collections").json()["collections"]]
        assert names == ["a-one", "b-two"]
        c.post(
            "/v1/collections/a-one/upsert", json={"vectors": [{"id": "x", "values": [1, 2, 3, 4]}]}
        )
        usage = c.get("/v1/usage").json()
        assert usage["collections"] == 2 and usage["vectors"] == 1 and usage["bytes"] > 0
        assert usage["limits"]["max_top_k"] == 1000
        r = c.delete("/v1/collections/a-one")
        assert r.status_code == 204
        assert c.get("/v1/collections/a-one").status_code == 404
        assert [col["name"] for col in c.get("/v1/collections").json()["collections"]] == ["b-two"]


def test_every_response_has_a_request_id_and_health_probes(stack: Stack) -> None:
    with stack.admin() as admin:
        for path in ("/healthz", "/readyz", "/openapi.json", "/admin/v1/clients"):
            r = admin.get(path)
            assert r.status_code == 200, (path, r.text)
            assert r.headers.get("x-request-id")
        assert admin.get("/readyz").json()["live_workers"] == 2
        r = admin.get("/v1/collections")
        assert r.status_code == 401 and r.json()["error"]["request_id"] == r.headers["x-request-id"]
        spec = admin.get("/openapi.json").json()
        for path in (
            "/v1/collections",
            "/v1/collections/{name}",
            "/v1/collections/{name}/upsert",
            "/v1/collections/{name}/query",
            "/v1/collections/{name}/fetch",
            "/v1/collections/{name}/delete",
            "/v1/usage",
            "/admin/v1/clients",
            "/admin/v1/clients/{client_id}/keys",
            "/admin/v1/events",
            "/admin/v1/audit/verify",
        ):
            assert path in spec["paths"], path
