"""A filter's long operand lists split into pieces for the frame to the worker: the
coordinator's side of workers/filter_pieces.py (which has the format and puts the
lists back). The query desk's helper process (api/query_desk.py) splits a large
filter as it parses the body; the frame carries the pieces as uint8 arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from workers.filter_pieces import KEY, PIECE_OPERANDS, Path, join_filter

_COMBINATORS = ("$and", "$or")


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
