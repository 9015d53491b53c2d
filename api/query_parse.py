"""Reading a JSON query body and sizing its filter, with nothing heavier than orjson.

Shared by the coordinator (api/lean_query.py, api/filter_bounds.py, api/binary_query.py)
and the query desk's helper process (api/query_desk.py), which imports only this: a
helper that loaded FastAPI, pydantic and the account store took 1.5 s or more to start,
and until it has started the coordinator parses large bodies on its event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_EF_SEARCH = 10_000
_FIELDS = frozenset(
    {"vector", "vectors", "top_k", "filter", "include_metadata", "include_values", "ef_search"}
)
_NUMBERS = frozenset({float, int})
# JSON gives exactly these types (never subclasses), so a set of types is enough.
_SCALAR = frozenset({str, int, float, bool, type(None)})


class Fallback(Exception):
    """Not provably valid: the reference route answers."""


def _row(value: Any) -> list[Any]:
    # strict floats: ints and floats, never bools or strings (set(map(type)) is the cheap test)
    if type(value) is not list or not set(map(type, value)) <= _NUMBERS:
        raise Fallback
    return value


def parse_json_query(body: bytes) -> dict[str, Any]:
    """The body as QueryRequest would accept it (with its defaults), or Fallback."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Fallback from None
    if type(doc) is not dict or not doc.keys() <= _FIELDS:
        raise Fallback
    vector, vectors = doc.get("vector"), doc.get("vectors")
    if vector is not None:
        if vectors is not None:
            raise Fallback
        rows = [_row(vector)]
    elif type(vectors) is list and vectors:
        rows = [_row(v) for v in vectors]
    else:
        raise Fallback
    options = query_options(doc)
    if options is None:
        raise Fallback
    return {"rows": rows, "single": vector is not None, **options}


def query_options(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The options of a query body as QueryRequest accepts them (defaults filled in), or None.

    The same rules as the model (strict types, ``top_k >= 1``, ``ef_search`` 1-10000),
    for the lean path (api/lean_query.py) and the binary format (api/binary_query.py).
    """
    top_k = doc.get("top_k", 10)
    include_metadata = doc.get("include_metadata", False)
    include_values = doc.get("include_values", False)
    ef_search = doc.get("ef_search")
    filter_ = doc.get("filter")
    if (
        type(top_k) is not int
        or top_k < 1
        or type(include_metadata) is not bool
        or type(include_values) is not bool
        or (
            ef_search is not None
            and (type(ef_search) is not int or not 1 <= ef_search <= MAX_EF_SEARCH)
        )
        or (filter_ is not None and type(filter_) is not dict)
    ):
        return None
    return {
        "top_k": top_k,
        "include_metadata": include_metadata,
        "include_values": include_values,
        "ef_search": ef_search,
        "filter": filter_,
    }


class FilterTooLarge(ValueError):
    """A filter past VP_MAX_FILTER_DEPTH or VP_MAX_FILTER_OPERANDS (the message says which)."""


class _Walk:
    def __init__(self, max_depth: int, max_operands: int) -> None:
        self.max_depth = max_depth
        self.max_operands = max_operands
        self.operands = 0

    def filter(self, doc: Any, depth: int) -> None:
        if depth > self.max_depth:
            raise FilterTooLarge(
                f"filter: $and/$or are nested more than {self.max_depth} levels deep "
                "(VP_MAX_FILTER_DEPTH)"
            )
        if not isinstance(doc, dict):
            raise FilterTooLarge("filter: each filter must be an object")
        for key, value in doc.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list):
                    raise FilterTooLarge(f"filter: '{key}' must be a non-empty list of filters")
                self.count(len(value))
                for sub in value:
                    self.filter(sub, depth + 1)
            elif isinstance(value, dict):
                for operand in value.values():
                    self.operand(key, operand)
            else:
                self.operand(key, value)

    def operand(self, field: str, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        # set(map(type, ...)) runs in C: half the event loop's time of a Python loop
        # over a 50,000-operand $in (0.8 ms of CPU instead of 1.5)
        if not set(map(type, values)) <= _SCALAR:
            raise FilterTooLarge(
                f"filter: field '{field[:64]}': operands are strings, numbers, booleans "
                "or lists of them"
            )
        self.count(len(values))

    def count(self, operands: int) -> None:
        self.operands += operands
        if self.operands > self.max_operands:
            raise FilterTooLarge(
                f"filter: more than {self.max_operands} operands in one filter "
                "(VP_MAX_FILTER_OPERANDS)"
            )


def size_filter(doc: dict[str, Any], max_depth: int, max_operands: int) -> None:
    """Raise FilterTooLarge for a filter nested or sized past the bounds (or of a shape
    whose size cannot be told: not an object, operands that are not scalars)."""
    _Walk(max_depth, max_operands).filter(doc, 0)


@dataclass(frozen=True, slots=True)
class CheckedFilter:
    """A filter already checked elsewhere (api/query_desk.py): its JSON, or why it was
    refused (the message ``check_filter_bounds`` raises for it). ``pieces``: its long
    operand lists, which the JSON holds empty (workers/filter_pieces.py)."""

    json: bytes
    error: str | None = None
    pieces: list[tuple[list[str | int], list[bytes]]] = field(default_factory=list)

    def fragment(self) -> orjson.Fragment:
        """The filter as the frame to the worker carries it, without encoding it again."""
        return orjson.Fragment(self.json)
