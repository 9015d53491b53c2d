"""List, count and update through a real ``vectorpanda up``, flat and hnsw alike."""

from __future__ import annotations

import base64
import random
import threading
from contextlib import closing
from typing import Any

import httpx
import numpy as np
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

DIM = 8
N = 240
INDEXES = ["flat", "hnsw"]


def _ids(seed: int, n: int) -> list[str]:
    """Ids whose code point order differs from naive ASCII-only assumptions."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"{rng.choice(['a', 'Z', '0', 'é', 'ß', '中', '😀', '~'])}{rng.randrange(10**5)}")
    return sorted(out)


def _meta(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"color": ["red", "green", "blue"][i % 3], "price": i % 50}
    if i % 4 == 0:
        meta["tags"] = ["sale"]
    return meta


def _collection(stack: Stack, name: str, index: str, n: int = N) -> tuple[httpx.Client, list[str]]:
    # premium: the rate limit of the free tier would throttle these request-heavy tests
    client = stack.client(stack.new_client(name, tier="premium"))
    r = client.post(
        "/v1/collections", json={"name": "items", "dimension": DIM, "metric": "l2", "index": index}
    )
    assert r.status_code == 201, r.text
    ids = _ids(hash(name) % 1000, n)
    data = np.random.default_rng(3).standard_normal((n, DIM)).astype(np.float32)
    rows = [{"id": v, "values": data[i].tolist(), "metadata": _meta(i)} for i, v in enumerate(ids)]
    for start in range(0, n, 100):
        r = client.post("/v1/collections/items/upsert", json={"vectors": rows[start : start + 100]})
        assert r.status_code == 200, r.text
    return client, ids


def _walk(client: httpx.Client, body: dict[str, Any], on_page: Any = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10_000):
        r = client.post("/v1/collections/items/list", json={**body, "cursor": cursor})
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["vectors"]) <= body.get("limit", 100)
        seen.extend(page["vectors"])
        if on_page is not None:
            on_page()
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the walk never ended")


@pytest.mark.parametrize("index", INDEXES)
def test_list_gives_every_page_once_in_byte_order(stack: Stack, index: str) -> None:
    client, ids = _collection(stack, f"list-{index}", index)
    byte_order = sorted(ids, key=lambda i: i.encode())
    with closing(client):
        seen = _walk(client, {"limit": 7})
        assert [v["id"] for v in seen] == byte_order
        assert all(set(v) == {"id"} for v in seen)
        # Exactly `limit` per page until the last; a full last page ends with a null cursor.
        r = client.post("/v1/collections/items/list", json={"limit": N})
        assert r.json()["next_cursor"] is None and len(r.json()["vectors"]) == N
        # Metadata and values, and a filter: the same as Python's reading of the data.
        data = np.random.default_rng(3).standard_normal((N, DIM)).astype(np.float32)
        body = {"limit": 11, "filter": {"color": "red", "price": {"$lt": 30}},
                "include_metadata": True, "include_values": True}  # fmt: skip
        seen = _walk(client, body)
        position = {v: i for i, v in enumerate(ids)}
        metas = {v: _meta(position[v]) for v in ids}
        expected = [v for v in byte_order if metas[v]["color"] == "red" and metas[v]["price"] < 30]
        assert [v["id"] for v in seen] == expected and expected
        for v in seen:
            assert v["metadata"] == _meta(position[v["id"]])
            assert (
                np.asarray(v["values"], np.float32).tobytes() == data[position[v["id"]]].tobytes()
            )
        # No match at all: one empty page, no cursor.
        r = client.post("/v1/collections/items/list", json={"filter": {"color": "pink"}})
        assert r.json() == {"vectors": [], "next_cursor": None}
        for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "5"}, {"filter": {"a": {"$x": 1}}},
                    {"include_values": "yes"}, {"page": 2}):  # fmt: skip
            r = client.post("/v1/collections/items/list", json=bad)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid", (bad, r.text)


@pytest.mark.parametrize("index", INDEXES)
def test_a_cursor_survives_concurrent_writes(stack: Stack, index: str) -> None:
    client, ids = _collection(stack, f"walk-{index}", index)
    keep = set(ids[::2])  # never touched: each must appear exactly once
    churn = [i for i in ids if i not in keep]
    stop = threading.Event()
    errors: list[str] = []
    writes = [0]  # rounds of writes done by the writer
    progressed = threading.Condition()

    def writer() -> None:
        rng = random.Random(9)
        with stack.client(client.headers["authorization"].split()[1]) as w:
            n = 0
            while not stop.is_set():
                new = [f"{rng.choice(['0', 'm', '中', '~'])}new{n}-{k}" for k in range(5)]
                n += 1
                rows = [{"id": v, "values": [0.5] * DIM} for v in new]
                r = w.post("/v1/collections/items/upsert", json={"vectors": rows})
                gone = [churn.pop(rng.randrange(len(churn)))] if churn else []
                d = w.post("/v1/collections/items/delete", json={"ids": gone})
                if r.status_code != 200 or d.status_code != 200:
                    errors.append(r.text + d.text)
                with progressed:
                    writes[0] += 1
                    progressed.notify_all()

    def after_page() -> None:
        # At least one round of writes lands between any two pages, however loaded the box.
        with progressed:
            target = writes[0] + 1
            progressed.wait_for(lambda: writes[0] >= target or bool(errors), timeout=30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with closing(client):
            seen = [v["id"] for v in _walk(client, {"limit": 9}, after_page)]
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    assert len(seen) == len(set(seen)), "an id was listed twice"
    assert seen == sorted(seen, key=lambda i: i.encode())
    assert keep <= set(seen), "an id present throughout the walk was skipped"
    assert any("new" in v for v in seen), "the writer never ran during the walk"


def _tampered(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[3] ^= 0x01  # change the id the cursor stands for, keep the MAC
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_forged_malformed_and_foreign_cursors_are_422(stack: Stack) -> None:
    a, _ = _collection(stack, "cursor-a", "flat", n=30)
    b, _ = _collection(stack, "cursor-b", "flat", n=30)
    with closing(a), closing(b):
        cursor = a.post("/v1/collections/items/list", json={"limit": 5}).json()["next_cursor"]
        assert cursor
        a.post("/v1/collections", json={"name": "other", "dimension": DIM})
        bad = [
            ("items", _tampered(cursor), a),
            ("items", "not-a-cursor!", a),
            ("items", "", a),
            ("items", "A" * 2000, a),
            ("items", base64.urlsafe_b64encode(b"\x01v1" + b"\x00" * 32).decode(), a),
            ("other", cursor, a),  # same client, another collection
            ("items", cursor, b),  # another client, a collection of the same name
        ]
        for name, forged, client in bad:
            r = client.post(f"/v1/collections/{name}/list", json={"cursor": forged})
            assert r.status_code == 422, (forged, r.text)
            assert r.json()["error"]["code"] == "invalid"
            assert "vectors" not in r.json()
        # The genuine cursor still works for its owner.
        r = a.post("/v1/collections/items/list", json={"cursor": cursor, "limit": 100})
        assert r.status_code == 200 and len(r.json()["vectors"]) == 25


@pytest.mark.parametrize("index", INDEXES)
def test_count_matches_a_python_filter_of_the_same_data(stack: Stack, index: str) -> None:
    client, _ = _collection(stack, f"count-{index}", index)
    metas = [_meta(i) for i in range(N)]
    price = np.array([m["price"] for m in metas])
    color = np.array([m["color"] for m in metas])
    sale = np.array(["sale" in m.get("tags", []) for m in metas])
    cases = [
        (None, N),
        ({}, N),
        ({"color": "blue"}, int((color == "blue").sum())),
        ({"price": {"$gte": 10, "$lt": 20}}, int(((price >= 10) & (price < 20)).sum())),
        ({"tags": {"$exists": False}}, int((~sale).sum())),
        ({"$or": [{"tags": "sale"}, {"price": 49}]}, int((sale | (price == 49)).sum())),
    ]
    with closing(client):
        for doc, expected in cases:
            body = {} if doc is None else {"filter": doc}
            r = client.post("/v1/collections/items/count", json=body)
            assert r.status_code == 200 and r.json() == {"count": expected}, (doc, r.text)
        client.post("/v1/collections/items/delete", json={"filter": {"color": "blue"}})
        r = client.post("/v1/collections/items/count", json={})
        assert r.json()["count"] == N - int((color == "blue").sum())
        r = client.post("/v1/collections/items/count", json={"filter": {"price": {"$gt": [1]}}})
        assert r.status_code == 422 and "price" in r.json()["error"]["message"]


def _fetch_meta(client: httpx.Client, ids: list[str]) -> dict[str, Any]:
    r = client.post("/v1/collections/items/fetch", json={"ids": ids})
    return {k: v["metadata"] for k, v in r.json()["vectors"].items()}


@pytest.mark.parametrize("index", INDEXES)
def test_update_by_ids_and_by_filter_then_queries_see_it(stack: Stack, index: str) -> None:
    client, ids = _collection(stack, f"update-{index}", index)
    position = {v: i for i, v in enumerate(ids)}
    with closing(client):
        chosen = ids[:3]
        body = {"ids": [*chosen, "missing-id"], "set": {"featured": True, "price": 999},
                "unset": ["color"]}  # fmt: skip
        r = client.post("/v1/collections/items/update", json=body)
        assert r.status_code == 200 and r.json() == {"updated": 3}, r.text
        for vid, meta in _fetch_meta(client, chosen).items():
            expected = {k: v for k, v in _meta(position[vid]).items() if k != "color"}
            assert meta == {**expected, "featured": True, "price": 999}
        body = {"filter": {"color": "green"}, "set": {"shelf": "g"}, "unset": ["tags"]}
        r = client.post("/v1/collections/items/update", json=body)
        greens = [v for v in ids if v not in chosen and _meta(position[v])["color"] == "green"]
        assert r.json() == {"updated": len(greens)}
        # Query filters see the new metadata at once (flat exact; hnsw with a wide ef).
        q = {"vector": [0.0] * DIM, "top_k": N, "include_metadata": True, "ef_search": 500}
        r = client.post("/v1/collections/items/query", json={**q, "filter": {"featured": True}})
        assert sorted(m["id"] for m in r.json()["matches"]) == sorted(chosen)
        r = client.post("/v1/collections/items/query", json={**q, "filter": {"shelf": "g"}})
        matches = r.json()["matches"]
        assert sorted(m["id"] for m in matches) == sorted(greens)
        assert all("tags" not in m["metadata"] for m in matches)
        r = client.post(
            "/v1/collections/items/count", json={"filter": {"color": {"$exists": False}}}
        )
        assert r.json()["count"] == 3
        # The same update again matches the same vectors and changes nothing more.
        before = _fetch_meta(client, chosen)
        again = {"ids": chosen, "set": {"featured": True, "price": 999}, "unset": ["color"]}
        assert client.post("/v1/collections/items/update", json=again).json() == {"updated": 3}
        assert _fetch_meta(client, chosen) == before


def test_bad_updates_are_refused_and_change_nothing(stack: Stack) -> None:
    client, ids = _collection(stack, "update-bad", "flat", n=20)
    with closing(client):
        before = _fetch_meta(client, ids)
        cases = [
            (422, {"ids": ids[:1]}),
            (422, {"ids": ids[:1], "set": {}}),
            (422, {"ids": ids[:1], "filter": {"color": "red"}, "set": {"a": 1}}),
            (422, {"set": {"a": 1}}),
            (422, {"ids": ids[:1], "set": {"a": {"nested": 1}}}),
            (422, {"ids": ids[:1], "set": {"a": 1}, "unset": ["a"]}),
            (422, {"ids": ids[:1], "set": {"a": "x" * 20_000}}),  # over VP_MAX_METADATA_BYTES
            (422, {"filter": {"price": {"$bad": 1}}, "set": {"a": 1}}),
            (422, {"ids": [""], "set": {"a": 1}}),
            (413, {"ids": [f"x{i}" for i in range(1001)], "set": {"a": 1}}),
        ]
        for status, body in cases:
            r = client.post("/v1/collections/items/update", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.json()["error"]["code"] == (
                "invalid" if status == 422 else "payload_too_large"
            )
        assert _fetch_meta(client, ids) == before


def test_scopes_read_for_list_and_count_write_for_update(stack: Stack) -> None:
    owner, _ = _collection(stack, "scopes", "flat", n=5)
    owner.close()
    reader_key = _key_for(stack, "scopes", ["read"])
    writer_key = _key_for(stack, "scopes", ["write"])
    with stack.client(reader_key) as reader, stack.client(writer_key) as writer:
        assert reader.post("/v1/collections/items/list", json={}).status_code == 200
        assert reader.post("/v1/collections/items/count", json={}).status_code == 200
        r = reader.post("/v1/collections/items/update", json={"filter": {}, "set": {"a": 1}})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert writer.post("/v1/collections/items/list", json={}).status_code == 403
        assert writer.post("/v1/collections/items/count", json={}).status_code == 403
        r = writer.post("/v1/collections/items/update", json={"filter": {}, "set": {"a": 1}})
        assert r.status_code == 200 and r.json() == {"updated": 5}


def _key_for(stack: Stack, name: str, scopes: list[str]) -> str:
    with stack.admin() as admin:
        clients = admin.get("/admin/v1/clients").json()["clients"]
        client_id = next(c["client_id"] for c in clients if c["name"] == name)
        r = admin.post(f"/admin/v1/clients/{client_id}/keys", json={"scopes": scopes})
        return str(r.json()["api_key"])


def test_openapi_describes_the_new_routes(stack: Stack) -> None:
    spec = httpx.get(f"{stack.url}/openapi.json").json()
    for action, request, response in [
        ("list", "ListRequest", "ListResponse"),
        ("count", "CountRequest", "CountResponse"),
        ("update", "UpdateRequest", "UpdateResponse"),
    ]:
        op = spec["paths"][f"/v1/collections/{{name}}/{action}"]["post"]
        body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert body.endswith(f"/{request}")
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ok.endswith(f"/{response}")
        assert spec["components"]["schemas"][request].get("examples"), request
