"""The binary upsert format (api/binary_upsert.py), answered from the admission gate.

Each binary upsert gets what the same rows sent as a packed JSON body get: the same
answer or error body, byte for byte, and the same frame to the worker. Frames the
format itself refuses are 400 (malformed) or 422 (rows that do not fill their shape),
and reach no worker.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.binary_query import BinaryQueryError
from api.binary_upsert import parse_binary_upsert
from api.upsert_rows import RowsRefused
from tests.unit.api.test_lean_front import READER, WRITER, build, client, headers
from tests.unit.api.test_lean_upsert import PATH, Worker

BINARY = "application/x-vectorpanda"
RNG = np.random.default_rng(29)
MATRIX = RNG.standard_normal((300, 24)).astype(np.float32)
IDS = [f"p{i}" for i in range(len(MATRIX))]
META: list[Any] = [{"n": i} if i % 3 else None for i in range(len(MATRIX))]


def frame(head: dict[str, Any], matrix: np.ndarray, magic: bytes = b"VPU1") -> bytes:
    p = orjson.dumps(head)
    return magic + struct.pack("<I", len(p)) + p + np.asarray(matrix, "<f4").tobytes()


def raw_frame(p: bytes) -> bytes:
    return b"VPU1" + struct.pack("<I", len(p)) + p


def binary(ids: list[Any], matrix: np.ndarray, metadata: list[Any] | None = None) -> bytes:
    head: dict[str, Any] = {"ids": ids, "shape": list(matrix.shape)}
    if metadata is not None:
        head["metadata"] = metadata
    return frame(head, matrix)


def packed(ids: list[Any], matrix: np.ndarray, metadata: list[Any] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "ids": ids,
        "values_b64": base64.b64encode(np.asarray(matrix, "<f4").tobytes()).decode(),
    }
    if metadata is not None:
        doc["metadata"] = metadata
    return orjson.dumps(doc)


def _with(matrix: np.ndarray, row: int, col: int, value: float) -> np.ndarray:
    changed = matrix.copy()
    changed[row, col] = value
    return changed


async def post_once(body: bytes, request_id: str, kind: str) -> tuple[httpx.Response, Worker]:
    """The answer of a new lean app to one upsert by the writer, and its worker."""
    worker = Worker()
    app, _, _ = build(worker, lean=True, max_body=16 << 20)
    try:
        async with client(app) as c:
            answer = await c.post(PATH, content=body, headers=headers(WRITER, request_id, kind))
    finally:
        app.query_desk.close()
    return answer, worker


# The same rows both ways: (ids, matrix, metadata)
ALIKE: list[tuple[list[Any], np.ndarray, list[Any] | None]] = [
    (IDS, MATRIX, META),
    (IDS, MATRIX, None),
    ([*IDS[:3], "p1"], MATRIX[:4], None),  # a repeated id: 422 naming it
    (IDS[:4], MATRIX[:4], META[:3]),  # metadata entries do not match the ids
    ([*IDS[:2], "x" * 300], MATRIX[:3], None),  # an id over 256 bytes
    (IDS[:2], MATRIX[:2], [{"n": 1}, 5]),  # metadata that is no object
    ([f"v{i}" for i in range(1001)], np.zeros((1001, 2), np.float32), None),  # 413
    (IDS[:4], _with(MATRIX[:4], 2, 5, np.nan), None),  # not finite
    (IDS[:4], _with(MATRIX[:4], 1, 0, np.inf), None),
    (IDS[:1], np.ones((1, 4097), np.float32), None),  # over the largest dimension
    (IDS[:2], MATRIX[:2], [{"k": "x" * 70_000}, None]),  # metadata over its limit
]


@pytest.mark.parametrize("case", range(len(ALIKE)))
async def test_a_binary_upsert_is_answered_as_its_packed_json(case: int) -> None:
    ids, matrix, metadata = ALIKE[case]
    answers, frames = [], []
    for body, kind in (
        (binary(ids, matrix, metadata), BINARY),
        (packed(ids, matrix, metadata), "application/json"),
    ):
        r, worker = await post_once(body, "same-id-0001", kind)
        answers.append((r.status_code, r.headers["content-type"], r.content))
        frames.append(worker.calls)
    assert answers[0] == answers[1]
    assert frames[0] == frames[1]
    assert (answers[0][0] == 200) == (case < 2)
    if case < 2:
        assert answers[0][2] == b'{"upserted":300}'
        args, values = frames[0][0]
        assert args["ids"] == IDS and values == MATRIX.tobytes()


REFUSED: list[tuple[bytes, int, str]] = [
    (b"VPQ1" + binary(IDS[:1], MATRIX[:1])[4:], 400, "starts with VPU1"),
    (b"VPU1\x00\x01", 400, "starts with VPU1"),
    (b"VPU1" + struct.pack("<I", 500) + b"{}", 400, "shorter than its header says"),
    (b"VPU1" + struct.pack("<I", 2) + b"{x", 400, "not valid JSON"),
    (b"VPU1" + struct.pack("<I", 2) + b"[]", 400, "must be a JSON object"),
    (raw_frame(b'{"ids":["a"],"shape":[1,1e999]}'), 400, "not valid JSON"),
    (raw_frame(b'{"ids":["a"],"shape":[1,' + b"9" * 22 + b"]}"), 422, "shape"),
    (frame({"ids": ["a"], "shape": [1, 2], "vectors": []}, MATRIX[:1, :2]), 422, "vectors"),
    (frame({"shape": [1, 2]}, MATRIX[:1, :2]), 422, "ids"),
    (frame({"ids": ["a"], "shape": [2]}, MATRIX[:1, :2]), 422, "shape must be [n, d]"),
    (frame({"ids": ["a"], "shape": [2, 1]}, MATRIX[:1, :2]), 422, "n = len(ids) = 1"),
    (frame({"ids": ["a"], "shape": [1, 0]}, MATRIX[:1, :0]), 422, "shape must be [n, d]"),
    (frame({"ids": ["a"], "shape": [1, 3]}, MATRIX[:1, :2]), 422, "needs 12 bytes"),
    (frame({"ids": ["a"], "shape": [1, 2]}, MATRIX[:1, :2])[:-1], 422, "needs 8 bytes"),
    (frame({"ids": ["a"], "shape": [1, True]}, MATRIX[:1, :1]), 422, "shape must be [n, d]"),
]


@pytest.mark.parametrize("case", range(len(REFUSED)))
async def test_a_malformed_binary_upsert_is_refused_and_stores_nothing(case: int) -> None:
    body, status, words = REFUSED[case]
    r, worker = await post_once(body, "bad-0001", BINARY)
    assert r.status_code == status
    error = r.json()["error"]
    assert error["code"] == ("bad_request" if status == 400 else "invalid")
    assert words in error["message"] and error["request_id"] == "bad-0001"
    assert worker.calls == []


async def test_a_binary_upsert_needs_the_write_scope_and_skips_the_stack() -> None:
    worker = Worker()
    app, _, _ = build(worker, lean=True, max_body=16 << 20)
    body = binary(IDS, MATRIX, META)
    try:
        async with client(app) as c:
            r = await c.post(PATH, content=body, headers=headers(READER, "read-0001", BINARY))
            assert r.status_code == 403 and worker.calls == []
            stack = app.middleware_stack

            async def no_stack(scope: Any, receive: Any, send: Any) -> None:
                raise AssertionError("a binary upsert reached the middleware stack")

            app.middleware_stack = no_stack
            try:
                r = await c.post(PATH, content=body, headers=headers(WRITER, "write-0001", BINARY))
            finally:
                app.middleware_stack = stack
    finally:
        app.query_desk.close()
    assert r.status_code == 200 and r.json() == {"upserted": 300}
    assert r.headers["x-request-id"] == "write-0001" and len(worker.calls) == 1


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
heads = st.fixed_dictionaries(
    {},
    optional={
        "ids": st.lists(st.text(max_size=4), max_size=4) | json_values,
        "metadata": st.lists(
            st.none() | st.dictionaries(st.text(max_size=3), json_values), max_size=4
        )
        | json_values,
        "shape": st.lists(st.integers(-2, 5), max_size=3) | json_values,
        "extra": json_values,
    },
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(head=heads, payload=st.binary(max_size=96), cut=st.integers(0, 12))
def test_any_frame_is_rows_or_the_apis_refusal(
    head: dict[str, Any], payload: bytes, cut: int
) -> None:
    """Hostile frames: P of any JSON shape, any payload, a frame cut anywhere in its head."""
    p = orjson.dumps(head)
    body = b"VPU1" + struct.pack("<I", len(p)) + p + payload
    for candidate in (body, body[:cut]):
        try:
            ids, matrix, metadata = parse_binary_upsert(candidate, 1000, 4096, 1024)
        except (RowsRefused, BinaryQueryError) as refused:
            error = refused.as_api_error() if isinstance(refused, BinaryQueryError) else refused
            assert error.status in (400, 413, 422) if isinstance(refused, RowsRefused) else True
            continue
        assert len(ids) == matrix.shape[0] == len(metadata) and matrix.dtype == np.float32
        assert np.isfinite(matrix).all()
