"""Large JSON upserts parsed by the query desk's helper (api/upsert_rows.py): the rows the
route would have built, or the route itself for anything it would refuse."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from api.query_desk import BIG_BODY_BYTES, UPSERT_DESK_VALUES, QueryDesk, json_values
from api.query_parse import Fallback
from api.schemas import UpsertRequest
from api.upsert_rows import INVALID, TOO_LARGE, RowsRefused, b64_bytes, parse_upsert, upsert_rows
from coordinator.dataplane import Limits

LIMITS = Limits()
BOUNDS = (LIMITS.max_upsert_vectors, LIMITS.max_dimension, LIMITS.max_metadata_bytes)
RNG = np.random.default_rng(5)
MATRIX = RNG.standard_normal((400, 64)).astype(np.float32)  # values enough for the desk


def _rows_body(matrix: np.ndarray = MATRIX, **extra: Any) -> bytes:
    vectors = [
        {"id": f"v{i}", "values": row.tolist(), "metadata": {"n": i, "tag": f"t{i % 3}"}}
        for i, row in enumerate(matrix)
    ]
    vectors[0]["metadata"] = None
    return orjson.dumps({"vectors": vectors, **extra})


def _packed_body(matrix: np.ndarray = MATRIX) -> bytes:
    ids = [f"p{i}" for i in range(len(matrix))]
    values = base64.b64encode(matrix.astype("<f4").tobytes()).decode()
    return orjson.dumps({"ids": ids, "values_b64": values, "metadata": [{"k": 1}] * len(ids)})


def _as_the_route(body: bytes) -> Any:
    """What the route builds from ``body`` (it validates the parsed body with its model)."""
    return upsert_rows(UpsertRequest.model_validate(orjson.loads(body)), *BOUNDS)


def _same_rows(got: Any, want: Any) -> None:
    (ids, matrix, metadata), (want_ids, want_matrix, want_metadata) = got, want
    assert ids == want_ids and metadata == want_metadata
    assert matrix.dtype == np.float32 and np.array_equal(matrix, want_matrix)


@pytest.mark.parametrize("body", [_rows_body(), _packed_body()], ids=["rows", "packed"])
def test_a_valid_body_gives_the_routes_rows(body: bytes) -> None:
    _same_rows(parse_upsert(body, *BOUNDS), _as_the_route(body))


def test_the_rows_are_the_vectors_sent() -> None:
    ids, matrix, metadata = _as_the_route(_rows_body())
    assert ids[:2] == ["v0", "v1"] and metadata[:2] == [None, {"n": 1, "tag": "t1"}]
    assert np.array_equal(matrix, MATRIX)


RAGGED = orjson.dumps(
    {"vectors": [{"id": "a", "values": [1.0, 2.0]}, {"id": "b", "values": [1.0]}]}
)
NESTED = orjson.dumps({"vectors": [{"id": "a", "values": [1.0], "metadata": {"k": {"x": 1}}}]})
REFUSED = {
    "not JSON": b'{"vectors": [',
    "NaN token": b'{"vectors": [{"id": "a", "values": [NaN]}]}',
    "ragged rows": RAGGED,
    "a repeated id": orjson.dumps({"vectors": [{"id": "a", "values": [1.0]}] * 2}),
    "an empty id": orjson.dumps({"vectors": [{"id": "", "values": [1.0]}]}),
    "an id past 256 bytes": orjson.dumps({"vectors": [{"id": "é" * 129, "values": [1.0]}]}),
    "a string for a float": orjson.dumps({"vectors": [{"id": "a", "values": ["1.0"]}]}),
    "an unknown field": _rows_body(extra_field=1),
    "both forms": orjson.dumps({"vectors": [], "ids": ["a"], "values_b64": "AAAAAA=="}),
    "no vectors": orjson.dumps({"vectors": []}),
    "too many vectors": _rows_body(np.zeros((LIMITS.max_upsert_vectors + 1, 2), np.float32)),
    "too many dimensions": _rows_body(np.zeros((2, LIMITS.max_dimension + 1), np.float32)),
    "bad base64": orjson.dumps({"ids": ["a"], "values_b64": "!!!"}),
    "nested metadata": NESTED,
    "a list": b"[1, 2]",
}  # fmt: skip


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_a_body_the_route_refuses_goes_to_the_route(body: bytes) -> None:
    assert parse_upsert(body, *BOUNDS) is None


def test_the_refusals_are_the_routes_statuses_and_messages() -> None:
    # the route turns these into its errors (api/routes/vectors.py, api_error)
    too_many = _rows_body(np.zeros((LIMITS.max_upsert_vectors + 1, 2), np.float32))
    for body, status, words in (
        (too_many, TOO_LARGE, "at most 1000 vectors per request; got 1001"),
        (RAGGED, INVALID, "all vectors must have the same, non-zero number of values"),
    ):
        with pytest.raises(RowsRefused) as refused:
            _as_the_route(body)
        assert (refused.value.status, refused.value.message) == (status, words)


@pytest.fixture(scope="module")
def desk() -> Iterator[QueryDesk]:
    desk = QueryDesk(LIMITS)
    desk._pool_started()
    assert desk._started is not None and desk._started.result(timeout=60)
    yield desk
    desk.close()


async def test_the_desk_parses_a_large_body_in_its_process(desk: QueryDesk) -> None:
    body = _rows_body()
    assert len(body) >= BIG_BODY_BYTES
    _same_rows(await desk.parse_upsert(body), _as_the_route(body))
    assert desk._pool is not None
    loaded = desk._pool.submit(eval, "'api.upsert_rows' in __import__('sys').modules")
    assert loaded.result(timeout=60)  # parsed there, not here


async def test_small_cheap_and_refused_bodies_go_to_the_route(desk: QueryDesk) -> None:
    small = _rows_body(MATRIX[:2])
    assert len(small) < BIG_BODY_BYTES
    packed = _packed_body()  # large, but few values: cheap to parse on the event loop
    assert len(packed) >= BIG_BODY_BYTES and json_values(packed) < UPSERT_DESK_VALUES
    ragged = orjson.loads(_rows_body())
    ragged["vectors"][5]["values"].pop()
    for body in (small, packed, orjson.dumps(ragged)):
        with pytest.raises(Fallback):
            await desk.parse_upsert(body)


def test_the_values_of_a_body_are_estimated_from_a_sample() -> None:
    rows = _rows_body()
    exact = rows.count(b",")
    assert len(rows) > 16 * 4096  # sampled, not counted
    for _ in range(20):
        assert 0.7 * exact < json_values(rows) < 1.3 * exact
    assert json_values(b'{"a": [1, 2, 3]}') == 2  # small: counted
    # a long string is cheap to parse, whatever its size
    assert json_values(orjson.dumps({"ids": ["a"], "values_b64": "A" * 400_000})) < 100


def test_a_packed_body_is_seen_as_the_few_values_it_holds() -> None:
    # As the SDK sends 1,000 x 384: 2 MB of base64 and 2,000 short values beside it,
    # which a sample of the whole body sometimes took for 25,000 (the desk's bar).
    matrix = RNG.standard_normal((1000, 384)).astype(np.float32)
    ids = [str(i) for i in range(1000)]
    values = base64.b64encode(matrix.tobytes()).decode()
    packed = orjson.dumps({"ids": ids, "values_b64": values, "metadata": [None] * 1000})
    exact = packed.count(b",")
    assert exact < 2100
    assert max(json_values(packed) for _ in range(300)) == exact  # counted outside the string
    spaced = packed.replace(b'"values_b64":', b'"values_b64" :\n ')
    assert json_values(spaced) == exact
    # Values beside the packed string still count, sampled when many.
    heavy = orjson.dumps({"ids": ids, "values_b64": values, "metadata": [[1] * 200] * 1000})
    assert json_values(heavy) > UPSERT_DESK_VALUES
    # The same name as a value, not a key, leaves the body sampled whole.
    named = orjson.dumps({"ids": ["values_b64", "x"], "v": [1, 2, 3]})
    assert json_values(named) == named.count(b",") == 4


async def test_until_its_process_has_started_the_route_parses() -> None:
    desk = QueryDesk(LIMITS)
    try:
        with pytest.raises(Fallback):
            await desk.parse_upsert(_rows_body())  # the helper is starting
        assert desk._started is not None and desk._started.result(timeout=60)
        _same_rows(await desk.parse_upsert(_rows_body()), _as_the_route(_rows_body()))
    finally:
        desk.close()


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "QUJD",
        "QUI=",
        "QU==",
        "QUJ",
        "Q===",
        "QUJD=",
        "QUJD==",
        "QU=D",
        "=QUJ",
        "QUJD\n",
        "QU JD",
        "Q\u00e9JD",
        "QUJD=x",
        "QUI==",
        "AA==AA==",
        "A",
        "QUJDQUI=QUI=",
    ],
)
def test_values_b64_is_decoded_exactly_as_b64decode_validate_decodes_it(payload: str) -> None:
    def outcome(decode: Any) -> tuple[str, bytes | None]:
        try:
            return "ok", decode(payload)
        except (binascii.Error, ValueError):
            return "refused", None

    assert outcome(b64_bytes) == outcome(lambda p: base64.b64decode(p, validate=True))
