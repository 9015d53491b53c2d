"""A filter's long operand lists carried beside the frame's header, in pieces: the
worker's side (the coordinator's, which splits them: coordinator/filter_pieces.py).

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
for any other the coordinator puts the lists back before sending.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from workers.gil_turns import Turns

PIECE_OPERANDS = 4096
KEY = "filter_pieces"

Path = list[str | int]


class PieceError(ValueError):
    """The frame's pieces do not fit its filter (a defect or a forged frame)."""


def join_filter(filter_: Any, places: Any, arrays: dict[str, np.ndarray]) -> Any:
    """A new filter: ``filter_`` with its lists put back from the frame's pieces
    (``places`` is the header's ``filter_pieces``). ``filter_`` is left as it was.

    Not in place, so the long lists belong to the caller (the request's thread) and are
    freed there. Put into the frame's header, they lived as long as the frame, whose
    last reference goes on the worker's event loop: freeing 50,000 strings there held
    the interpreter lock about a millisecond, while every tenant's queries waited.
    Only the dicts and lists on the way to each list are copied (the filter's skeleton).
    """
    if not isinstance(places, list) or not isinstance(filter_, dict):
        raise PieceError("filter_pieces must be a list, with a filter")
    filter_ = dict(filter_)
    next_piece = 0
    turns = Turns()  # the lock to the event loop between pieces (workers/gil_turns.py)
    for place in places:
        if not (isinstance(place, list) and len(place) == 2 and isinstance(place[1], int)):
            raise PieceError("each place is [path, count]")
        path, count = place
        values: list[Any] = []
        for _ in range(count):
            turns.step()
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
    node = doc  # a copy already (join_filter): each node on the way is copied too
    for step in path[:-1]:
        child = _step(node, step)
        if isinstance(child, dict | list):
            child = dict(child) if isinstance(child, dict) else list(child)
            node[step] = child
        node = child
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
