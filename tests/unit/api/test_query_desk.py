"""The query desk (api/query_desk.py): large bodies parsed in a helper process read the
same as when parsed in the coordinator, refusals included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from api.errors import Invalid
from api.filter_bounds import check_filter_bounds
from api.query_desk import BIG_BODY_BYTES, QueryDesk
from api.query_parse import CheckedFilter, Fallback, parse_json_query
from coordinator.dataplane import Limits
from coordinator.filter_pieces import piece_arrays
from workers.filter_pieces import KEY as PIECES_KEY
from workers.filter_pieces import join_filter
from workers.protocol import decode_frame, encode_frame

STRINGS = [f"x{i:07d}" for i in range(20_000)]
BIG_FILTER = {"$or": [{"color": {"$nin": STRINGS}}, {"n": {"$in": list(range(100))}}]}


def _started(limits: Limits) -> QueryDesk:
    """A desk whose helper process has started (until then it parses in place)."""
    desk = QueryDesk(limits)
    desk._pool_started()
    assert desk._started is not None
    assert desk._started.result(timeout=60)
    return desk


@pytest.fixture(scope="module")
def desk() -> Iterator[QueryDesk]:
    desk = _started(Limits(max_filter_operands=30_000))
    yield desk
    desk.close()


def _as_parsed_here(query: dict[str, Any]) -> dict[str, Any]:
    """The query without the desk's note of its parse's CPU time (for pacing)."""
    spent = query.pop("parse_s")
    assert 0 < spent < 10
    return query


def _body(**fields: Any) -> bytes:
    body = orjson.dumps({"vector": [0.5, 1], "top_k": 3, **fields})
    return body


async def test_a_large_body_reads_as_parsed_here_with_its_filter_encoded(
    desk: QueryDesk,
) -> None:
    body = _body(filter=BIG_FILTER, include_metadata=True)
    assert len(body) >= BIG_BODY_BYTES
    query = _as_parsed_here(await desk.parse(body))
    filter_ = query.pop("filter")
    here = parse_json_query(body)
    assert here.pop("filter") == BIG_FILTER
    assert query == here
    assert isinstance(filter_, CheckedFilter) and filter_.error is None
    check_filter_bounds(filter_, desk.limits)  # checked already: passes
    # The frame to the worker carries the filter's JSON as it is, its long list in
    # pieces; the worker puts the list back.
    assert [path for path, _ in filter_.pieces] == [["$or", 0, "color", "$nin"]]
    places, arrays = piece_arrays(filter_.pieces)
    header = {"op": "query", "filter": filter_.fragment(), PIECES_KEY: places}
    frame = decode_frame(encode_frame(header, arrays))
    assert frame.header["filter"] != BIG_FILTER
    joined = join_filter(frame.header["filter"], frame.header[PIECES_KEY], frame.arrays)
    assert joined == BIG_FILTER


async def test_a_filter_past_its_bounds_is_refused_with_the_same_message(
    desk: QueryDesk,
) -> None:
    too_many = {"color": {"$in": STRINGS + STRINGS}}
    query = await desk.parse(_body(filter=too_many))
    with pytest.raises(Invalid) as here:
        check_filter_bounds(too_many, desk.limits)
    with pytest.raises(Invalid) as checked:
        check_filter_bounds(query["filter"], desk.limits)
    assert checked.value.message == here.value.message
    assert "VP_MAX_FILTER_OPERANDS" in checked.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"vector": [1, 2], "top_k": 3, "filter": {"c": {"$in": ["' + b"a" * BIG_BODY_BYTES,
        _body(filter=BIG_FILTER, unknown=1),
        _body(filter=BIG_FILTER, top_k="3"),
    ],
)
async def test_a_body_not_provably_valid_goes_to_the_route(desk: QueryDesk, body: bytes) -> None:
    with pytest.raises(Fallback):
        await desk.parse(body)


async def test_small_bodies_and_empty_filters_stay_as_they_are(desk: QueryDesk) -> None:
    small = _body(filter={"n": {"$in": [1, 2]}})
    assert await desk.parse(small) == parse_json_query(small)
    big_empty = _body(filter={}, vectors=None, vector=[0.5] * (BIG_BODY_BYTES // 4))
    query = await desk.parse(big_empty)
    assert query["filter"] == {} and query["rows"] == [[0.5] * (BIG_BODY_BYTES // 4)]


async def test_until_its_process_has_started_the_desk_parses_here() -> None:
    desk = QueryDesk(Limits())
    body = _body(filter=BIG_FILTER)
    try:
        # the helper is starting
        assert _as_parsed_here(await desk.parse(body)) == parse_json_query(body)
        assert desk._started is not None and desk._started.result(timeout=60)
        assert isinstance((await desk.parse(body))["filter"], CheckedFilter)
    finally:
        desk.close()


async def test_without_its_process_the_desk_parses_here() -> None:
    desk = _started(Limits())
    body = _body(filter=BIG_FILTER)
    try:
        assert isinstance((await desk.parse(body))["filter"], CheckedFilter)
        pool = desk._pool
        assert pool is not None
        for process in list(pool._processes.values()):  # the helper dies
            process.kill()
            process.join()
        assert _as_parsed_here(await desk.parse(body)) == parse_json_query(body)  # here
        assert desk._pool is None  # the next large body starts a new helper
    finally:
        desk.close()


def test_the_helper_process_loads_no_web_stack_or_store(desk: QueryDesk) -> None:
    # What the helper has imported once started, asked in the helper itself: until it has
    # started, large bodies are parsed on the coordinator's event loop, so it must start
    # fast (FastAPI, pydantic and the account store took it 1.5 s or more).
    heavy = {"fastapi", "starlette", "pydantic", "sqlalchemy", "uvicorn", "websockets"}
    probe = f"sorted(m for m in __import__('sys').modules if m.split('.')[0] in {heavy!r})"
    assert desk._pool is not None
    assert desk._pool.submit(eval, probe).result(timeout=60) == []
    ours = "sorted(m for m in __import__('sys').modules if m.startswith(('coordinator', 'api')))"
    loaded = desk._pool.submit(eval, ours).result(timeout=60)
    assert set(loaded) == {"api", "api.query_desk", "api.query_parse", "coordinator",
                           "coordinator.filter_pieces"}  # fmt: skip
