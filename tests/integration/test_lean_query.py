"""The lean query path: the binary formats through the real service, and concurrent queries.

Byte-for-byte equality with the old JSON answers is test_query_golden.py's job; here the
binary format (api/binary_query.py, sent by the SDK) must answer exactly what the JSON
body answers, refuse malformed frames clearly, and many concurrent quick queries to one
collection (answered in the worker's receive loop) must each get their own answer.
Binary upserts (api/binary_upsert.py, sent by the SDK) store exactly what was sent,
and the ones the API refuses change nothing.
"""

from __future__ import annotations

import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.stack import Stack
from vectorpanda_client import Client
from vectorpanda_client.binary import CONTENT_TYPE, encode_query, encode_upsert

pytestmark = pytest.mark.integration

DIM = 16
RNG = np.random.default_rng(11)
DATA = RNG.standard_normal((300, DIM)).astype(np.float32)
QUERIES = RNG.standard_normal((24, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def loaded(stack: Stack) -> tuple[str, str]:
    """A client with a flat and an hnsw collection of the same 300 vectors, and a write-only key."""
    key = stack.new_client("lean", tier="premium")
    write_only = stack.new_client("lean-w", scopes=("write",), tier="premium")
    ids = [f"v{i}" for i in range(len(DATA))]
    metadata = [{"part": i % 5, "name": f"n{i}"} for i in range(len(DATA))]
    with Client(stack.url, key) as client:
        for name, index in (("flat", "flat"), ("graph", "hnsw")):
            client.create_collection(name, DIM, metric="l2", index=index)
            client.collection(name).upsert(ids, DATA, metadata)
    return key, write_only


def _post(
    stack: Stack, key: str, name: str, content: bytes, ctype: str, route: str = "query"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": ctype}
    return httpx.post(
        f"{stack.url}/v1/collections/{name}/{route}", content=content, headers=headers, timeout=30
    )


def _binary(matrix: np.ndarray, single: bool, **options: Any) -> bytes:
    return encode_query(matrix, single, options)


OPTION_SETS: list[dict[str, Any]] = [
    {"top_k": 5},
    {"top_k": 3, "include_metadata": True},
    {"top_k": 4, "include_values": True, "include_metadata": True},
    {"top_k": 7, "filter": {"part": {"$in": [1, 3]}}, "include_metadata": True},
    {"top_k": 2, "ef_search": 20},
]


@pytest.mark.parametrize("name", ["flat", "graph"])
@pytest.mark.parametrize("options", OPTION_SETS)
def test_binary_answers_exactly_what_json_answers(
    stack: Stack, loaded: tuple[str, str], name: str, options: dict[str, Any]
) -> None:
    key, _ = loaded
    single_json = orjson.dumps({"vector": QUERIES[0].tolist(), **options})
    batch_json = orjson.dumps({"vectors": QUERIES[:3].tolist(), **options})
    for as_json, as_binary in (
        (single_json, _binary(QUERIES[:1], True, **options)),
        (batch_json, _binary(QUERIES[:3], False, **options)),
    ):
        want = _post(stack, key, name, as_json, "application/json")
        got = _post(stack, key, name, as_binary, CONTENT_TYPE)
        assert want.status_code == 200, want.text
        assert got.status_code == 200 and got.content == want.content
        assert got.headers["content-type"] == "application/json"
    # a single vector answers {matches}, a batch {results}
    single = _post(stack, key, name, _binary(QUERIES[:1], True, **options), CONTENT_TYPE)
    batch = _post(stack, key, name, _binary(QUERIES[:2], False, **options), CONTENT_TYPE)
    assert set(single.json()) == {"matches"} and len(batch.json()["results"]) == 2


def test_sdk_queries_go_binary_and_match_brute_force(stack: Stack, loaded: tuple[str, str]) -> None:
    key, _ = loaded
    with Client(stack.url, key) as client:
        results = client.collection("flat").query(QUERIES, top_k=5, include_values=True)
    assert isinstance(results, list) and len(results) == len(QUERIES)
    for q, result in zip(QUERIES, results, strict=True):
        distances = ((DATA - q) ** 2).sum(axis=1)
        want = np.argsort(distances, kind="stable")[:5]
        assert result.ids == [f"v{i}" for i in want]
        np.testing.assert_allclose(result.scores, distances[want], rtol=1e-4)
        np.testing.assert_array_equal(result.values, DATA[want])


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def test_binary_refusals_are_clear_and_match_json_ones(
    stack: Stack, loaded: tuple[str, str]
) -> None:
    key, write_only = loaded
    good = _binary(QUERIES[:1], True, top_k=3)
    head_len = struct.unpack_from("<I", good, 4)[0]
    status, code, _ = _error(_post(stack, key, "flat", b"XXXX" + good[4:], CONTENT_TYPE))
    assert (status, code) == (400, "bad_request")
    status, code, _ = _error(_post(stack, key, "flat", good[:6], CONTENT_TYPE))
    assert (status, code) == (400, "bad_request")
    broken = good[:8] + b"{" * head_len + good[8 + head_len :]
    assert _error(_post(stack, key, "flat", broken, CONTENT_TYPE))[:2] == (400, "bad_request")
    # values that do not fill the shape
    status, code, message = _error(_post(stack, key, "flat", good[:-4], CONTENT_TYPE))
    assert (status, code) == (422, "invalid") and "shape" in message
    # the same rules, and the same words, as a JSON body
    for bad in ({"top_k": 0}, {"top_k": True}, {"ef_search": 10_001}, {"extra": 1}):
        as_json = orjson.dumps({"vector": QUERIES[0].tolist(), **bad})
        want = _error(_post(stack, key, "flat", as_json, "application/json"))
        got = _error(_post(stack, key, "flat", _binary(QUERIES[:1], True, **bad), CONTENT_TYPE))
        assert want[0] == 422 and got == want
    nan = QUERIES[:1].copy()
    nan[0, 3] = np.nan
    status, code, message = _error(_post(stack, key, "flat", _binary(nan, True), CONTENT_TYPE))
    assert (status, code) == (422, "invalid") and "finite" in message
    wrong_dim = _binary(QUERIES[:1, :8], True)
    status, code, message = _error(_post(stack, key, "flat", wrong_dim, CONTENT_TYPE))
    assert (status, code) == (422, "invalid") and "dimension" in message
    assert _error(_post(stack, key, "nope", good, CONTENT_TYPE))[:2] == (404, "not_found")
    assert _error(_post(stack, write_only, "flat", good, CONTENT_TYPE))[:2] == (403, "forbidden")
    too_many = _binary(np.ones((101, DIM), dtype=np.float32), False)
    assert _error(_post(stack, key, "flat", too_many, CONTENT_TYPE))[:2] == (
        413,
        "payload_too_large",
    )


def test_concurrent_queries_to_one_collection_each_get_their_own_answer(
    stack: Stack, loaded: tuple[str, str]
) -> None:
    """Different top_k, filters and ef_search at once, on both collections: each answer is
    the one the same request gets alone."""
    key, _ = loaded
    requests = []
    for i in range(len(QUERIES)):
        options = dict(OPTION_SETS[i % len(OPTION_SETS)])
        options["top_k"] = 1 + i % 9
        name = "graph" if i % 2 else "flat"
        requests.append((name, orjson.dumps({"vector": QUERIES[i].tolist(), **options})))
    alone = [_post(stack, key, n, body, "application/json").content for n, body in requests]
    with ThreadPoolExecutor(12) as pool:
        for _ in range(3):
            together = list(
                pool.map(
                    lambda r: _post(stack, key, r[0], r[1], "application/json").content,
                    requests,
                )
            )
            assert together == alone


def test_a_large_filter_is_answered_as_the_reference_route_answers(
    stack: Stack, loaded: tuple[str, str]
) -> None:
    # A body past 64 KiB is parsed in the coordinator's helper process (api/query_desk.py);
    # "application/json; charset=utf-8" is not the lean path's exact type: the route answers.
    key, _ = loaded
    names = [f"n{i}" for i in range(0, 300, 3)] + [f"x{i:07d}" for i in range(20_000)]
    # The first large body starts the helper (and may be parsed here meanwhile); the
    # second round is parsed there, its long lists sent to the worker in pieces
    # (workers/filter_pieces.py), the $or's 4,997 numbers included.
    for filter_ in 2 * (
        {"name": {"$nin": names}},
        {"$or": [{"name": {"$in": names}}, {"part": {"$in": list(range(3, 5000))}}]},
        {"name": {"$in": names * 6}},  # past VP_MAX_FILTER_OPERANDS: 422
    ):
        time.sleep(0.5 if filter_ == {"name": {"$nin": names}} else 0)
        body = orjson.dumps({"vector": QUERIES[0].tolist(), "top_k": 7, "filter": filter_})
        assert len(body) > 64 * 1024
        lean = _post(stack, key, "flat", body, "application/json")
        route = _post(stack, key, "flat", body, "application/json; charset=utf-8")
        assert lean.status_code == route.status_code
        if lean.status_code == 200:
            assert lean.content == route.content
            assert len(lean.json()["matches"]) == 7
        else:
            assert lean.status_code == 422
            assert lean.json()["error"]["message"] == route.json()["error"]["message"]
            assert "VP_MAX_FILTER_OPERANDS" in lean.json()["error"]["message"]


def test_sdk_upserts_go_binary_and_store_exactly_what_was_sent(
    stack: Stack, loaded: tuple[str, str]
) -> None:
    key, _ = loaded
    with Client(stack.url, key) as client:
        for name in ("flat", "graph"):
            got = client.collection(name).fetch([f"v{i}" for i in (0, 7, 299)])
            assert np.array_equal(got["v7"].values, DATA[7])  # float32 bit for bit
            assert got["v299"].metadata == {"part": 299 % 5, "name": "n299"}
        body = encode_upsert(["b0", "b1"], DATA[:2] * 2, [{"part": 9}, None])
        answer = _post(stack, key, "flat", body, CONTENT_TYPE, "upsert")
        assert answer.status_code == 200 and answer.json() == {"upserted": 2}
        got = client.collection("flat").fetch(["b0", "b1"])
        assert np.array_equal(got["b1"].values, DATA[1] * 2)
        assert got["b0"].metadata == {"part": 9} and got["b1"].metadata == {}
        client.collection("flat").delete(["b0", "b1"])


def test_binary_upsert_refusals_are_clear_and_change_nothing(
    stack: Stack, loaded: tuple[str, str]
) -> None:
    key, _ = loaded
    read_only = stack.new_client("lean-r", scopes=("read",), tier="premium")
    with Client(stack.url, key) as client:
        before = client.collection("flat").count()
        good = encode_upsert(["n1", "n2"], DATA[:2], None)
        refusals = [
            (key, "flat", b"XXXX" + good[4:], 400, "bad_request"),
            (key, "flat", good[:-4], 422, "invalid"),  # values that do not fill the shape
            (key, "flat", encode_upsert(["n1"], DATA[:1, :8], None), 422, "invalid"),  # dimension
            (key, "flat", encode_upsert(["n1", "n1"], DATA[:2], None), 422, "invalid"),
            (key, "nope", good, 404, "not_found"),
            (read_only, "flat", good, 403, "forbidden"),
        ]
        for who, name, body, status, code in refusals:
            assert _error(_post(stack, who, name, body, CONTENT_TYPE, "upsert"))[:2] == (
                status,
                code,
            )
        assert client.collection("flat").count() == before
        assert client.collection("flat").fetch(["n1", "n2"]) == {}
