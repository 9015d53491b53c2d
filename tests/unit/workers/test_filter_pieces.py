"""A filter's long operand lists travel in pieces (workers/filter_pieces.py) and are put
back as they were: the worker answers a query with pieces exactly as with the whole
filter, and a forged or broken frame is refused, never half-read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from coordinator.filter_pieces import joined_frame, piece_arrays, split_filter
from workers.filter_pieces import KEY, PIECE_OPERANDS, PieceError, join_filter
from workers.protocol import decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry

from .test_worker_service import data

STRINGS = [f"s{i:06d}" for i in range(10_000)]
NUMBERS = list(range(0, 3 * PIECE_OPERANDS, 3))
FILTER: dict[str, Any] = {
    "$and": [
        {"color": {"$nin": STRINGS}},
        {"$or": [{"n": {"$in": [*NUMBERS, 2.5, True]}}, {"tag": {"$in": ["a", "b"]}}]},
    ],
    "kind": {"$in": ["x"] * (PIECE_OPERANDS + 1)},
    "short": {"$in": list(range(PIECE_OPERANDS))},  # not longer than a piece: stays
}


def _wire(doc: dict[str, Any]) -> Any:
    """The frame the coordinator sends for ``doc``, as the worker decodes it."""
    split, lists = split_filter(doc)
    places, arrays = piece_arrays(lists)
    header = {"op": "query", "filter": orjson.Fragment(orjson.dumps(split)), KEY: places}
    return decode_frame(encode_frame(header, {"queries": np.zeros((1, 2), np.float32), **arrays}))


def test_long_lists_go_in_pieces_and_come_back_in_order() -> None:
    split, lists = split_filter(FILTER)
    assert [path for path, _ in lists] == [
        ["$and", 0, "color", "$nin"],
        ["$and", 1, "$or", 0, "n", "$in"],
        ["kind", "$in"],
    ]
    assert [len(pieces) for _, pieces in lists] == [3, 2, 2]
    assert split["$and"][0] == {"color": {"$nin": []}}
    assert split["short"] == FILTER["short"]
    assert FILTER["$and"][0]["color"]["$nin"] is STRINGS  # the caller's filter is untouched
    frame = _wire(FILTER)
    assert len(orjson.dumps(frame.header)) < len(orjson.dumps(FILTER)) // 4  # "short" is most
    assert join_filter(frame.header["filter"], frame.header[KEY], frame.arrays) == FILTER


def test_the_frames_filter_is_left_as_it_came() -> None:
    """The long lists belong to the joined copy (freed with the request, in its thread),
    not to the frame's header (freed with the frame, on the event loop)."""
    frame = _wire(FILTER)
    before = orjson.dumps(frame.header["filter"])
    joined = join_filter(frame.header["filter"], frame.header[KEY], frame.arrays)
    assert joined == FILTER
    assert orjson.dumps(frame.header["filter"]) == before
    assert frame.header["filter"]["$and"][0] == {"color": {"$nin": []}}
    assert joined["short"] is frame.header["filter"]["short"]  # off every path: shared


def test_a_filter_without_long_lists_is_left_as_it_is() -> None:
    doc = {"a": {"$in": [1, 2]}, "$or": [{"b": 1}, {"c": {"$exists": False}}]}
    assert split_filter(doc) == (doc, [])


def test_a_worker_without_pieces_gets_the_whole_filter() -> None:
    split, lists = split_filter(FILTER)
    places, arrays = piece_arrays(lists)
    header = {"op": "query", "filter": orjson.Fragment(orjson.dumps(split)), KEY: places}
    queries = np.ones((1, 2), np.float32)
    whole_header, whole_arrays = joined_frame(header, {"queries": queries, **arrays})
    frame = decode_frame(encode_frame(whole_header, whole_arrays))
    assert KEY not in frame.header and list(frame.arrays) == ["queries"]
    assert frame.header["filter"] == FILTER


@pytest.mark.parametrize(
    "places, arrays",
    [
        ([[["kind", "$in"], 2]], {"fp0": b"[1]"}),  # a piece missing
        ([[["kind", "$in"], 1]], {"fp0": b"[1"}),  # not JSON
        ([[["kind", "$in"], 1]], {"fp0": b'{"a": 1}'}),  # not a list
        ([[["nowhere", "$in"], 1]], {"fp0": b"[1]"}),  # a path out of the filter
        ([[["kind"], 1]], {"fp0": b"[1]"}),  # a place that is not an empty list
        ([[["$and", True, "c"], 1]], {"fp0": b"[1]"}),  # a bool is not an index
        ([[[], 1]], {"fp0": b"[1]"}),
        ([["kind", "$in"]], {}),  # not [path, count]
        ({"kind": 1}, {}),
    ],
)
def test_pieces_that_do_not_fit_are_refused(places: Any, arrays: dict[str, bytes]) -> None:
    doc = {"kind": {"$in": []}, "$and": [{"c": {"$in": []}}]}
    as_arrays = {k: np.frombuffer(v, np.uint8) for k, v in arrays.items()}
    with pytest.raises(PieceError):
        join_filter(doc, places, as_arrays)


async def test_the_worker_answers_a_query_with_pieces_as_with_the_whole_filter(
    tmp_path: Path,
) -> None:
    svc = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    try:
        await data(svc, "assign")
        await data(svc, "create_collection", collection="c", dimension=2, metric="l2",
                   index="flat")  # fmt: skip
        rng = np.random.default_rng(5)
        ids = [f"v{i}" for i in range(60)]
        metadata = [{"color": f"s{i * 250:06d}", "n": i % 9} for i in range(60)]
        vectors = rng.standard_normal((60, 2)).astype(np.float32)
        await data(svc, "upsert", {"vectors": vectors}, collection="c", ids=ids,
                   metadata=metadata)  # fmt: skip
        doc = {"$or": [{"color": {"$in": STRINGS[:5000]}}, {"n": {"$in": NUMBERS}}]}
        split, lists = split_filter(doc)
        places, arrays = piece_arrays(lists)
        assert places
        query = {"collection": "c", "top_k": 60}
        whole, _ = await data(svc, "query", {"queries": vectors[:1]}, filter=doc, **query)
        pieces, _ = await data(svc, "query", {"queries": vectors[:1], **arrays},
                               filter=split, **{KEY: places}, **query)  # fmt: skip
        assert whole["ok"] is True and pieces == whole
        matched = whole["results"][0]["ids"]
        assert 0 < len(matched) < 60  # the filter chose some rows, not all
        # Pieces that do not fit the filter: refused, as any malformed filter.
        broken, _ = await data(svc, "query", {"queries": vectors[:1]}, filter=split,
                               **{KEY: places}, **query)  # fmt: skip
        assert broken["ok"] is False and broken["error"]["code"] == "invalid"
        assert "filter pieces" in broken["error"]["message"]
    finally:
        await svc.release_all()
