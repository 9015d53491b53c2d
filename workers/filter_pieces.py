"""A filter's long operand lists carried beside the frame's header, in pieces.

A filter with tens of thousands of ``$in`` / ``$nin`` operands made a frame header of
hundreds of kilobytes, which the worker decoded in one ``orjson.loads`` call: 3-4 ms
holding the interpreter lock, in which the worker's event loop (every other tenant's
queries) could not run. The coordinator's query desk (api/query_desk.py) therefore
sends each list longer than ``PIECE_OPERANDS`` as JSON pieces of at most that many
operands, in the frame's arrays (``fp0``, ``fp1``, ... as uint8), and leaves an empty
list in its place in the filter; the header's ``filter_pieces`` says where each list
goes and how many pieces it has, in order. The worker puts the lists back in the
request's own thread (``join_filter``), a piece at a time, so the lock passes on
between pieces; the filter it then compiles is the one the client sent.

Only workers that say so in their hello (``filter_pieces: true``) are sent pieces;
for any other the coordinator puts the lists back before sending (``joined_frame``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

PIECE_OPERANDS = 4096
KEY = "filter_pieces"
_COMBINATORS = ("$and", "$or")

Path = list[str | int]


class PieceError(ValueError):
    """The frame's pieces do not fit its filter (a defect or a forged frame)."""


def split_filter(doc: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[Path, list[bytes]]]]:
    """``doc`` with each operand list longer than PIECE_OPERANDS emptied, and for each
    such list its place and its JSON pieces. ``doc`` itself is not changed."""
    lists: list[tuple[Path, list[bytes]]] = []

    def walk(node: dict[str, Any], path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            here: Path = [*path, key]
            if key in _COMBINATORS and isinstance(value, list):
                out[key] = [
                    walk(sub, [*here, i]) if isinstance(sub, dict) else sub
                    for i, sub in enumerate(value)
                ]
            elif isinstance(value, dict):
                out[key] = {op: operand(o, [*here, op]) for op, o in value.items()}
            else:
                out[key] = operand(value, here)
        return out

    def operand(value: Any, path: Path) -> Any:
        if not isinstance(value, list) or len(value) <= PIECE_OPERANDS:
            return value
        pieces = [
            orjson.dumps(value[start : start + PIECE_OPERANDS])
            for start in range(0, len(value), PIECE_OPERANDS)
        ]
        lists.append((path, pieces))
        return []

    return walk(doc, []), lists


def piece_arrays(lists: list[tuple[Path, list[bytes]]]) -> tuple[list[list[Any]], dict[str, Any]]:
    """The header's ``filter_pieces`` and the frame's arrays for ``split_filter``'s lists."""
    places: list[list[Any]] = []
    arrays: dict[str, Any] = {}
    for path, pieces in lists:
        places.append([path, len(pieces)])
        for piece in pieces:
            arrays[f"fp{len(arrays)}"] = np.frombuffer(piece, dtype=np.uint8)
    return places, arrays


def join_filter(filter_: Any, places: Any, arrays: dict[str, np.ndarray]) -> Any:
    """The filter with its lists put back from the frame's pieces (``places`` is the
    header's ``filter_pieces``). The filter is changed in place and returned."""
    if not isinstance(places, list) or not isinstance(filter_, dict):
        raise PieceError("filter_pieces must be a list, with a filter")
    next_piece = 0
    for place in places:
        if not (isinstance(place, list) and len(place) == 2 and isinstance(place[1], int)):
            raise PieceError("each place is [path, count]")
        path, count = place
        values: list[Any] = []
        for _ in range(count):
            piece = arrays.get(f"fp{next_piece}")
            next_piece += 1
            if piece is None or piece.dtype != np.uint8:
                raise PieceError("a piece is missing")
            try:
                part = orjson.loads(piece.data)
            except orjson.JSONDecodeError as exc:
                raise PieceError(f"a piece is not JSON: {exc}") from exc
            if not isinstance(part, list):
                raise PieceError("a piece is not a list")
            values.extend(part)
        _put(filter_, path, values)
    return filter_


def _put(doc: Any, path: Any, values: list[Any]) -> None:
    if not isinstance(path, list) or not path:
        raise PieceError("a path is a non-empty list")
    node = doc
    for step in path[:-1]:
        node = _step(node, step)
    last = path[-1]
    if _step(node, last) != []:
        raise PieceError("a piece's place does not hold an empty list")
    node[last] = values


def _step(node: Any, step: Any) -> Any:
    if isinstance(node, dict) and isinstance(step, str) and step in node:
        return node[step]
    if isinstance(node, list) and type(step) is int and 0 <= step < len(node):
        return node[step]
    raise PieceError("a path does not lead into the filter")


def joined_frame(
    header: dict[str, Any], arrays: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and arrays with the pieces put back into the filter (for a worker that
    does not take pieces). ``header["filter"]`` may be an ``orjson.Fragment``."""
    header = dict(header)
    places = header.pop(KEY)
    filter_ = orjson.loads(orjson.dumps(header["filter"]))
    header["filter"] = join_filter(filter_, places, arrays)
    return header, {k: v for k, v in arrays.items() if not k.startswith("fp")}
