"""Request building and response parsing shared by Client and AsyncClient."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from vectorpanda_client import errors as sdk_errors
from vectorpanda_client import operations as ops
from vectorpanda_client.binary import CONTENT_TYPE
from vectorpanda_client.errors import ERRORS_BY_CODE, InvalidError, ServerError, error_from_response
from vectorpanda_client.exchange import Answer, Call, Operation


def drive(op: Operation[object], answers: list[dict[str, object]]) -> tuple[list[Call], object]:
    calls: list[Call] = []
    try:
        call = next(op)
        for answer in answers:
            calls.append(call)
            call = op.send(Answer(200, {}, orjson.dumps(answer)))
    except StopIteration as done:
        return calls, done.value
    raise AssertionError("the operation wanted more answers than scripted")


def test_upsert_sends_raw_float32_and_batches_at_1000() -> None:
    data = np.arange(2500 * 3, dtype=np.float64).reshape(2500, 3)
    ids = [f"v{i}" for i in range(2500)]
    meta = [{"i": i} for i in range(2500)]
    answers: list[dict[str, object]] = [{"upserted": n} for n in (1000, 1000, 500)]
    calls, total = drive(ops.upsert("c", ids, data, meta), answers)
    assert total == 2500 and len(calls) == 3
    assert [c.path for c in calls] == ["/v1/collections/c/upsert"] * 3
    assert {c.content_type for c in calls} == {CONTENT_TYPE}
    # b"VPU1" | u32 length of P | P (ids, metadata, shape) | float32 values
    last = calls[2].content() or b""
    assert last[:4] == b"VPU1"
    (length,) = struct.unpack_from("<I", last, 4)
    head = orjson.loads(last[8 : 8 + length])
    assert head == {"ids": ids[2000:], "metadata": meta[2000:], "shape": [500, 3]}
    raw = np.frombuffer(last[8 + length :], dtype="<f4").reshape(500, 3)
    assert np.array_equal(raw, data[2000:].astype(np.float32))
    calls, _ = drive(ops.upsert("c", ["a"], [[1.0, 2.0]], None), [{"upserted": 1}])
    first = calls[0].content() or b""
    (length,) = struct.unpack_from("<I", first, 4)
    assert orjson.loads(first[8 : 8 + length]) == {"ids": ["a"], "shape": [1, 2]}


def test_upsert_checks_shapes_and_finiteness_before_sending() -> None:
    with pytest.raises(InvalidError, match="2 ids for 3 vectors"):
        next(ops.upsert("c", ["a", "b"], np.zeros((3, 4)), None))
    with pytest.raises(InvalidError, match="finite"):
        next(ops.upsert("c", ["a"], [[1.0, float("nan")]], None))
    with pytest.raises(ValueError):  # InvalidError is a ValueError too
        next(ops.upsert("c", ["a"], [[1.0]], [{}, {}]))


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), float("-inf"), 1e39],  # 1e39 is infinite as float32
)
def test_vectors_with_a_value_that_is_not_finite_are_refused_before_sending(bad: float) -> None:
    rows = np.ones((3, 4), dtype=np.float64)
    rows[2, 1] = bad
    with pytest.raises(InvalidError, match="must be finite"):
        next(ops.upsert("c", ["a", "b", "c"], rows, None))
    with pytest.raises(InvalidError, match="must be finite"):
        next(ops.query("c", rows[2], 10, None, False, False, None))


def test_the_largest_finite_values_pass_the_finiteness_check() -> None:
    # Their float32 sum would overflow; the check sums in float64, where it cannot.
    biggest = np.finfo(np.float32).max
    rows = np.full((1000, 384), biggest, dtype=np.float32)
    rows[::2] = -biggest
    rows[0, 0] = biggest
    matrix = ops.as_matrix(rows)
    assert matrix is rows  # already float32 and contiguous: sent as it is
    assert ops.as_matrix(np.zeros((0, 4), dtype=np.float32)).shape == (0, 4)


def test_query_one_vector_or_a_matrix_in_batches_of_100() -> None:
    match = {"id": "a", "score": 0.5, "values": [1.0, 2.0], "metadata": {"k": "v"}}
    calls, result = drive(
        ops.query("c", np.array([1.0, 2.0]), 5, {"k": "v"}, True, True, 64),
        [{"matches": [match]}],
    )
    assert calls[0].content_type == CONTENT_TYPE
    body = calls[0].content() or b""
    # b"VPQ1" | u32 length of the options | options (JSON, with the shape) | float32 values
    assert body[:4] == b"VPQ1"
    (length,) = struct.unpack_from("<I", body, 4)
    assert orjson.loads(body[8 : 8 + length]) == {
        "top_k": 5,
        "filter": {"k": "v"},
        "include_metadata": True,
        "include_values": True,
        "ef_search": 64,
        "shape": [2],
    }
    assert np.frombuffer(body[8 + length :], dtype="<f4").tolist() == [1.0, 2.0]
    assert result.ids == ["a"] and result.scores.tolist() == [0.5]  # type: ignore[attr-defined]
    assert result.values.dtype == np.float32  # type: ignore[attr-defined]
    matrix = np.ones((250, 2), dtype=np.float32)
    answers = [{"results": [{"matches": []}] * n} for n in (100, 100, 50)]
    calls, results = drive(ops.query("c", matrix, 10, None, False, False, None), answers)
    assert len(calls) == 3 and len(results) == 250  # type: ignore[arg-type]
    first = calls[0].content() or b""
    (length,) = struct.unpack_from("<I", first, 4)
    assert orjson.loads(first[8 : 8 + length]) == {"top_k": 10, "shape": [100, 2]}
    assert len(first) == 8 + length + 100 * 2 * 4


def test_delete_needs_exactly_one_of_ids_and_filter() -> None:
    with pytest.raises(InvalidError):
        next(ops.delete("c", None, None))
    with pytest.raises(InvalidError):
        next(ops.delete("c", ["a"], {"k": 1}))
    calls, n = drive(ops.delete("c", None, {"k": 1}), [{"deleted": 4}])
    assert n == 4 and calls[0].body == {"filter": {"k": 1}}
    calls, n = drive(ops.delete("c", [str(i) for i in range(1500)], None), [{"deleted": 1}] * 2)
    assert n == 2 and len(calls) == 2


def test_names_are_quoted_into_paths() -> None:
    assert ops.collection_path("a/b", "query") == "/v1/collections/a%2Fb/query"


def test_every_documented_code_has_its_own_error_class() -> None:
    documented = {
        "bad_request", "unauthorized", "forbidden", "not_found", "conflict",
        "payload_too_large", "invalid", "paused", "rate_limited", "quota_exceeded", "unavailable",
        "insufficient_storage",
    }  # fmt: skip
    assert set(ERRORS_BY_CODE) == documented
    assert len(set(ERRORS_BY_CODE.values())) == len(documented)
    for code, cls in ERRORS_BY_CODE.items():
        body = orjson.dumps({"error": {"code": code, "message": "m", "request_id": "r"}})
        err = error_from_response(429, {"Retry-After": "3"}, body)
        assert type(err) is cls and err.code == code and err.retry_after == 3
        assert isinstance(err, sdk_errors.VectorPandaError)


def test_unknown_or_bodiless_errors_are_server_errors() -> None:
    err = error_from_response(502, {"x-request-id": "r9"}, b"<html>bad gateway</html>")
    assert isinstance(err, ServerError) and err.code == "http_502" and err.request_id == "r9"
    err = error_from_response(500, {}, b'{"error": {"code": "internal", "message": "boom"}}')
    assert isinstance(err, ServerError) and err.code == "internal" and err.message == "boom"
