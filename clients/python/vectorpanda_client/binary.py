"""The binary query format the SDK sends (the server's side: api/binary_query.py).

``b"VPQ1" | u32 LE length of P | P (JSON options + "shape") | float32 LE values``: the
query vectors travel as raw float32, so neither side writes or parses them as text.
Upserts travel the same way: ``b"VPU1"``, P holding ``ids``, ``metadata`` and
``shape`` (the server's side: api/binary_upsert.py).
With ``Accept: application/x-vectorpanda`` the server answers in the binary answer
format (``decode_answer``; the server's side: workers/query_answer.py): ids and
metadata as JSON, scores and values as raw float32. A server that answers JSON
anyway (an older one, or a request it hands to its reference route) is read as JSON.
Documented in docs/api.md ("Changes in this version").
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from vectorpanda_client.models import Match, QueryResult

CONTENT_TYPE = "application/x-vectorpanda"
MAGIC = b"VPQ1"
UPSERT_MAGIC = b"VPU1"
ANSWER_MAGIC = b"VPA1"
ACCEPT = f"{CONTENT_TYPE}, application/json;q=0.9"
_LEN = struct.Struct("<I")


def encode_query(matrix: np.ndarray, single: bool, options: dict[str, Any]) -> bytes:
    """The body of a query of ``matrix`` (n, d); ``single`` sends one vector of shape [d]."""
    values = np.ascontiguousarray(matrix, dtype="<f4")
    shape = [values.shape[1]] if single else [values.shape[0], values.shape[1]]
    return query_prefix(options, shape) + values.tobytes()


def query_prefix(options: dict[str, Any], shape: list[int]) -> bytes:
    """A query body up to its values: magic, the head's length and the head (the same
    for every query of that shape and those options)."""
    head = orjson.dumps({**options, "shape": shape})
    return b"".join((MAGIC, _LEN.pack(len(head)), head))


def encode_upsert(
    ids: list[str], matrix: np.ndarray, metadata: list[dict[str, Any] | None] | None
) -> bytes:
    """The body of an upsert of ``matrix`` (n, d) under ``ids`` (``b"VPU1"`` framing)."""
    values = np.ascontiguousarray(matrix, dtype="<f4")
    head: dict[str, Any] = {"ids": ids, "shape": [values.shape[0], values.shape[1]]}
    if metadata is not None:
        head["metadata"] = metadata
    encoded = orjson.dumps(head)
    return b"".join((UPSERT_MAGIC, _LEN.pack(len(encoded)), encoded, values.tobytes()))


def _parts(content: bytes) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """The JSON head, every score, and every value row (None unless asked for)."""
    if content[:4] != ANSWER_MAGIC or len(content) < 8:
        raise ValueError("not a binary query answer")
    (length,) = _LEN.unpack_from(content, 4)
    head = orjson.loads(content[8 : 8 + length])
    total = sum(len(r["ids"]) for r in head["results"])
    offset = 8 + length
    scores = np.frombuffer(content, dtype="<f4", count=total, offset=offset)
    values = None
    dimension = head.get("dimension")
    if dimension is not None:
        values = (
            np.frombuffer(content, dtype="<f4", count=total * dimension, offset=offset + 4 * total)
            .reshape(total, dimension)
            .copy()
        )  # writable, as the JSON answer's arrays are
    return head, scores, values


def decode_answer(content: bytes) -> dict[str, Any]:
    """A binary answer as the JSON answer reads: ``{matches}`` or ``{results: [{matches}]}``."""
    head, scores, values = _parts(content)
    answers = []
    row = 0
    for result in head["results"]:
        metas = result.get("metadata")
        matches = []
        for i, vid in enumerate(result["ids"]):
            match: dict[str, Any] = {"id": vid, "score": float(scores[row])}
            if metas is not None:
                match["metadata"] = metas[i]
            if values is not None:
                match["values"] = values[row]
            matches.append(match)
            row += 1
        answers.append({"matches": matches})
    return answers[0] if head.get("single") else {"results": answers}


def decode_results(content: bytes) -> list[QueryResult]:
    """A binary answer straight into ``QueryResult``s, one per query vector."""
    if content[:4] != ANSWER_MAGIC or len(content) < 8:
        raise ValueError("not a binary query answer")
    (length,) = _LEN.unpack_from(content, 4)
    head = orjson.loads(content[8 : 8 + length])
    if head.get("dimension") is not None:  # values asked for: numpy rows as the JSON path
        return _results_with_values(content)
    results = head["results"]
    total = sum(len(r["ids"]) for r in results)
    try:
        every = _floats(total).unpack_from(content, 8 + length)  # the float32s as floats
    except struct.error:
        raise ValueError("truncated binary query answer") from None
    out = []
    row = 0
    for result in results:
        ids = result["ids"]
        metas = result.get("metadata")
        end = row + len(ids)
        if metas is None:
            matches = [
                _match(vid, score, None) for vid, score in zip(ids, every[row:end], strict=True)
            ]
        else:
            matches = [
                _match(vid, score, meta)
                for vid, score, meta in zip(ids, every[row:end], metas, strict=True)
            ]
        out.append(QueryResult(matches))
        row = end
    return out


# A Match made without its dataclass __init__ (which, frozen, sets each field through
# object.__setattr__): its slots set directly, the same object at about half the cost;
# ten of them are made for every answer. tests/unit/sdk checks it equals Match(...).
_SLOTS = vars(Match)
_NEW = object.__new__
_SET_ID, _SET_SCORE = _SLOTS["id"].__set__, _SLOTS["score"].__set__
_SET_METADATA, _SET_VALUES = _SLOTS["metadata"].__set__, _SLOTS["values"].__set__


def _match(vid: str, score: float, metadata: dict[str, Any] | None) -> Match:
    match = _NEW(Match)
    _SET_ID(match, vid)
    _SET_SCORE(match, score)
    _SET_METADATA(match, metadata)
    _SET_VALUES(match, None)
    return match


def _floats(count: int) -> struct.Struct:
    found = _FLOATS.get(count)
    if found is None:
        found = _FLOATS[count] = struct.Struct(f"<{count}f")
    return found


_FLOATS: dict[int, struct.Struct] = {}


def _results_with_values(content: bytes) -> list[QueryResult]:
    head, scores, values = _parts(content)
    assert values is not None
    every = scores.tolist()
    out = []
    row = 0
    for result in head["results"]:
        metas = result.get("metadata")
        matches = [
            Match(vid, every[row + i], metas[i] if metas is not None else None, values[row + i])
            for i, vid in enumerate(result["ids"])
        ]
        out.append(QueryResult(matches))
        row += len(matches)
    return out
