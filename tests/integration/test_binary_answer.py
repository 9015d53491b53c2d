"""The binary query answer (``Accept: application/x-vectorpanda``) carries exactly the JSON
answer's ids, scores, metadata and values; JSON stays the default, errors stay JSON.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from api.lean_query import wants_binary
from tests.stack import Stack
from vectorpanda_client import Client
from vectorpanda_client.binary import ACCEPT, CONTENT_TYPE, decode_answer, encode_query

pytestmark = pytest.mark.integration

DIM = 12
RNG = np.random.default_rng(29)
DATA = RNG.standard_normal((250, DIM)).astype(np.float32)
QUERIES = RNG.standard_normal((5, DIM)).astype(np.float32)

OPTION_SETS: list[dict[str, Any]] = [
    {"top_k": 5},
    {"top_k": 3, "include_metadata": True},
    {"top_k": 4, "include_values": True, "include_metadata": True},
    {"top_k": 6, "filter": {"part": {"$in": [1, 3]}}, "include_metadata": True},
    {"top_k": 2, "ef_search": 20, "include_values": True},
    {"top_k": 300},  # more than there are
]


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    key = stack.new_client("binans", tier="premium")
    ids = [f"v{i}" for i in range(len(DATA))]
    # every third vector has no metadata: the answer says {} for it, in both formats
    metadata = [None if i % 3 == 0 else {"part": i % 5, "n": f"x{i}"} for i in range(len(DATA))]
    with Client(stack.url, key) as client:
        for name, metric, index in (("flat", "l2", "flat"), ("graph", "cosine", "hnsw")):
            client.create_collection(name, DIM, metric=metric, index=index)
            client.collection(name).upsert(ids, DATA, metadata)  # type: ignore[arg-type]
    return key


def _post(stack: Stack, key: str, name: str, body: bytes, ctype: str, accept: str | None):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": ctype}
    if accept is not None:
        headers["Accept"] = accept
    url = f"{stack.url}/v1/collections/{name}/query"
    return httpx.post(url, content=body, headers=headers, timeout=30)


def _same(binary: dict[str, Any], json_answer: dict[str, Any]) -> None:
    """Equal ids, scores (the same float32 values), metadata and values."""
    if "matches" in json_answer:
        binary, json_answer = {"results": [binary]}, {"results": [json_answer]}
    assert len(binary["results"]) == len(json_answer["results"])
    for got, want in zip(binary["results"], json_answer["results"], strict=True):
        assert [m["id"] for m in got["matches"]] == [m["id"] for m in want["matches"]]
        assert [m["score"] for m in got["matches"]] == [m["score"] for m in want["matches"]]
        for g, w in zip(got["matches"], want["matches"], strict=True):
            assert g.keys() == w.keys()
            assert g.get("metadata") == w.get("metadata")
            if "values" in w:
                assert np.array_equal(g["values"], np.asarray(w["values"], dtype=np.float32))


@pytest.mark.parametrize("name", ["flat", "graph"])
@pytest.mark.parametrize("options", OPTION_SETS)
def test_binary_answer_carries_what_the_json_answer_carries(
    stack: Stack, key: str, name: str, options: dict[str, Any]
) -> None:
    for single, rows in ((True, QUERIES[:1]), (False, QUERIES[:3])):
        vectors = {"vector": rows[0].tolist()} if single else {"vectors": rows.tolist()}
        as_json = orjson.dumps({**vectors, **options})
        want = _post(stack, key, name, as_json, "application/json", None)
        assert want.status_code == 200 and want.headers["content-type"] == "application/json"
        for body, ctype in (
            (as_json, "application/json"),
            (encode_query(rows, single, options), CONTENT_TYPE),
        ):
            got = _post(stack, key, name, body, ctype, ACCEPT)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == CONTENT_TYPE
            _same(decode_answer(got.content), want.json())
            # JSON stays the default, and is what a client preferring it gets
            for accept in (
                None,
                "*/*",
                "application/json",
                f"application/json, {CONTENT_TYPE};q=0.5",
            ):
                plain = _post(stack, key, name, body, ctype, accept)
                assert plain.content == want.content
                assert plain.headers["content-type"] == "application/json"


def test_errors_stay_json_whatever_accept_says(stack: Stack, key: str) -> None:
    for name, body in (
        ("nope", {"vector": QUERIES[0].tolist()}),
        ("flat", {"vector": QUERIES[0].tolist(), "top_k": 0}),
        ("flat", {"vector": QUERIES[0, :4].tolist()}),
    ):
        raw = orjson.dumps(body)
        want = _post(stack, key, name, raw, "application/json", None)
        got = _post(stack, key, name, raw, "application/json", ACCEPT)
        assert want.status_code >= 400
        assert (got.status_code, got.headers["content-type"]) == (
            want.status_code,
            want.headers["content-type"],
        )
        got_error, want_error = got.json()["error"], want.json()["error"]
        del got_error["request_id"], want_error["request_id"]  # one per request
        assert got_error == want_error


def test_the_sdk_reads_binary_answers_as_it_read_json_ones(stack: Stack, key: str) -> None:
    with Client(stack.url, key) as client:
        graph = client.collection("graph")
        one = graph.query(QUERIES[0], top_k=4, include_metadata=True, include_values=True)
        many = graph.query(QUERIES, top_k=3, include_metadata=True)
    as_json = orjson.dumps({"vector": QUERIES[0].tolist(), "top_k": 4, "include_metadata": True,
                            "include_values": True})  # fmt: skip
    want = _post(stack, key, "graph", as_json, "application/json", None).json()["matches"]
    assert one.ids == [m["id"] for m in want]
    assert [m.score for m in one] == [m["score"] for m in want]
    assert [m.metadata for m in one] == [m["metadata"] for m in want]
    for match, w in zip(one, want, strict=True):
        assert match.values is not None
        assert np.array_equal(match.values, np.asarray(w["values"], np.float32))
        match.values[0] = 0.0  # writable, as before
    assert isinstance(many, list) and len(many) == len(QUERIES)
    assert all(len(r) == 3 for r in many)


@pytest.mark.parametrize(
    ("accept", "binary"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        (CONTENT_TYPE, True),
        (ACCEPT, True),
        (f"application/json, {CONTENT_TYPE}", True),
        (f"application/json, {CONTENT_TYPE};q=0.5", False),
        (f"{CONTENT_TYPE};q=0", False),
        (f"{CONTENT_TYPE};q=bad", False),
    ],
)
def test_accept_negotiation(accept: str | None, binary: bool) -> None:
    assert wants_binary(None if accept is None else accept.encode()) is binary
