"""The blocking client's one-vector query path (``Client._query_one``) against the general
one (``ops.query`` run by ``Client._run``), on a real loopback socket server: the same
request bytes, the same results, and the same errors and retries for any other answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from tests.unit.sdk.test_transport import Reply, Server
from vectorpanda_client import NO_RETRIES, Client, ConnectionFailed, RetryPolicy
from vectorpanda_client import operations as ops
from vectorpanda_client.binary import ANSWER_MAGIC, CONTENT_TYPE, decode_results
from vectorpanda_client.errors import BadRequestError, InvalidError, NotFoundError
from vectorpanda_client.models import Match, QueryResult

KEY = "vp_test_fast_path"
FAST_RETRIES = RetryPolicy(max_retries=3, base_delay=0.001, max_delay=0.01)


def _binary(ids: list[str], scores: list[float], metadata: list[Any] | None = None) -> bytes:
    result: dict[str, Any] = {"ids": ids}
    if metadata is not None:
        result["metadata"] = metadata
    head = orjson.dumps({"results": [result], "single": True})
    body = (
        ANSWER_MAGIC
        + len(head).to_bytes(4, "little")
        + head
        + np.asarray(scores, dtype="<f4").tobytes()
    )
    return _answer(200, CONTENT_TYPE.encode(), body)


def _answer(status: int, content_type: bytes, body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
        status,
        content_type,
        b"".join(extra),
        len(body),
        body,
    )


def _error(status: int, code: str, *extra: bytes) -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": f"{code} here", "request_id": "r1"}})
    return _answer(status, b"application/json", body, *extra)


def _general(client: Client, name: str, vector: Any, **options: Any) -> Any:
    return client._run(
        ops.query(
            name,
            vector,
            options.get("top_k", 10),
            None,
            options.get("include_metadata", False),
            False,
            options.get("ef_search"),
        )
    )


VECTOR = np.array([0.5, -1.25, 3.0, 1e-3], dtype=np.float32)


@pytest.mark.parametrize(
    "options",
    [{}, {"top_k": 3}, {"include_metadata": True}, {"ef_search": 40, "top_k": 7}],
    ids=["defaults", "top_k", "metadata", "ef_search"],
)
def test_the_fast_path_sends_the_general_paths_bytes_and_reads_the_same_result(
    serve: Callable[[Reply], Server], options: dict[str, Any]
) -> None:
    meta = [{"lang": "en"}, None] if options.get("include_metadata") else None
    server = serve(lambda _: _binary(["a", "b"], [0.25, 1.5], meta))
    with Client(server.url + "/prefix", KEY) as client:
        collection = client.collection("my col")
        fast = collection.query(VECTOR, **options)
        again = collection.query(VECTOR, **options)  # the kept head
        general = _general(client, "my col", VECTOR, **options)
    assert server.requests[0] == server.requests[1] == server.requests[2]
    assert server.requests[0].startswith(b"POST /prefix/v1/collections/my%20col/query HTTP/1.1")
    assert server.requests[0].endswith(VECTOR.tobytes())
    assert fast == again == general
    assert fast.ids == ["a", "b"] and fast.scores.tolist() == [0.25, 1.5]
    assert [m.metadata for m in fast] == (meta or [None, None])


def test_the_vectors_own_dtype_and_layout_are_sent_as_the_general_path_sends_them(
    serve: Callable[[Reply], Server],
) -> None:
    server = serve(lambda _: _binary(["a"], [0.0]))
    wide = np.array([1.0, 2.0, 3.0], dtype=np.float64)
    strided = np.arange(6, dtype=np.float32)[::2]
    with Client(server.url, KEY) as client:
        for vector in (wide, strided):
            client.collection("c").query(vector)
            _general(client, "c", vector)
    assert server.requests[0] == server.requests[1]
    assert server.requests[2] == server.requests[3]
    assert server.requests[0].endswith(np.array([1, 2, 3], dtype="<f4").tobytes())


def test_a_json_answer_is_read_as_the_general_path_reads_it(
    serve: Callable[[Reply], Server],
) -> None:
    body = orjson.dumps({"matches": [{"id": "x", "score": 0.5, "metadata": {"k": 1}}]})
    server = serve(lambda _: _answer(200, b"application/json", body))
    with Client(server.url, KEY) as client:
        fast = client.collection("c").query(VECTOR, include_metadata=True)
        general = _general(client, "c", VECTOR, include_metadata=True)
    assert fast == general == QueryResult([Match("x", 0.5, {"k": 1})])


def test_a_retryable_answer_is_retried_by_the_same_rules(
    serve: Callable[[Reply], Server],
) -> None:
    answers = iter([_error(503, "unavailable"), _error(429, "rate_limited", b"Retry-After: 0\r\n")])
    server = serve(lambda _: next(answers, _binary(["a"], [1.0])))
    with Client(server.url, KEY, retry=FAST_RETRIES) as client:
        result = client.collection("c").query(VECTOR)
    assert result.ids == ["a"]
    assert len(server.requests) == 3 and len(set(server.requests)) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_error(404, "not_found"), NotFoundError),
        (_error(400, "bad_request"), BadRequestError),
        (_error(503, "unavailable"), None),
    ],
    ids=["404", "400", "503 without retries"],
)
def test_an_error_answer_raises_what_the_general_path_raises(
    serve: Callable[[Reply], Server], answer: bytes, error: type[Exception] | None
) -> None:
    server = serve(lambda _: answer)
    raised = []
    with Client(server.url, KEY, retry=NO_RETRIES) as client:
        runs = (lambda: client.collection("c").query(VECTOR), lambda: _general(client, "c", VECTOR))
        for run in runs:
            with pytest.raises(Exception) as caught:
                run()
            raised.append(caught.value)
    fast, general = raised
    assert type(fast) is type(general) and str(fast) == str(general)
    for attribute in ("status", "code", "request_id", "retry_after"):
        assert getattr(fast, attribute, None) == getattr(general, attribute, None)
    if error is not None:
        assert isinstance(fast, error)
    assert len(server.requests) == 2  # no retry on either path


def test_a_connection_closed_without_an_answer_is_retried_or_raised_as_before(
    serve: Callable[[Reply], Server],
) -> None:
    first = {"left": 1}

    def reply(_: bytes) -> bytes | None:
        if first["left"]:
            first["left"] -= 1
            return None  # closes the connection: the query was sent, no answer came
        return _binary(["a"], [2.0])

    server = serve(reply)
    with Client(server.url, KEY, retry=FAST_RETRIES) as client:
        assert client.collection("c").query(VECTOR).ids == ["a"]  # idempotent: retried
    assert len(server.requests) == 2 and server.requests[0] == server.requests[1]

    first["left"] = 2
    with Client(server.url, KEY, retry=NO_RETRIES) as client:
        with pytest.raises(ConnectionFailed) as fast:
            client.collection("c").query(VECTOR)
        with pytest.raises(ConnectionFailed) as general:
            _general(client, "c", VECTOR)
    assert fast.value.sent and general.value.sent
    assert str(fast.value) == str(general.value)


def test_a_vector_that_is_not_finite_is_refused_before_anything_is_sent(
    serve: Callable[[Reply], Server],
) -> None:
    server = serve(lambda _: _binary(["a"], [0.0]))
    with Client(server.url, KEY) as client, pytest.raises(InvalidError, match="finite"):
        client.collection("c").query(np.array([1.0, np.nan], dtype=np.float32))
    assert server.requests == []


def test_the_decoders_matches_are_the_matches_the_constructor_makes() -> None:
    head = orjson.dumps(
        {"results": [{"ids": ["a", "b"], "metadata": [{"x": 1}, None]}], "single": True}
    )
    content = (
        ANSWER_MAGIC
        + len(head).to_bytes(4, "little")
        + head
        + np.array([0.5, 2.0], dtype="<f4").tobytes()
    )
    (result,) = decode_results(content)
    expected = [Match("a", 0.5, {"x": 1}), Match("b", 2.0, None)]
    assert result.matches == expected
    assert [repr(m) for m in result] == [repr(m) for m in expected]
    assert hash(result[1]) == hash(expected[1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result[0].score = 1.0  # type: ignore[misc]
    assert dataclasses.replace(result[0], score=3.0) == Match("a", 3.0, {"x": 1})
