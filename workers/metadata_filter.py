"""Metadata filters (Mongo-style, as in shared/API.md): compile once, then test rows.

A filter is compiled once per request into closures; ``$in``/``$nin`` operands become
sets (one per kind), so testing a row costs a set lookup per element, not a pass over
the operands. ``matching_rows`` tests the rows in chunks under the request's budget.

Grammar: a filter is an object. ``{"field": value}`` means ``{"field": {"$eq": value}}``;
an operator object may hold several operators (all must hold). ``$and`` / ``$or`` take a
non-empty list of filters. Several keys in one object are combined with AND.

Semantics (chosen to match MongoDB where it has an answer):

* Values compare only within a kind: numbers with numbers (``true`` is not ``1``),
  strings with strings, booleans with booleans. A stored value of another kind never
  matches a comparison, it is not an error (metadata has no schema).
* ``$gt`` ``$gte`` ``$lt`` ``$lte`` take a number or a string (strings compare by code
  point); ``$eq`` / ``$ne`` a string, number or boolean; ``$in`` / ``$nin`` a list of
  those; ``$exists`` a boolean. Anything else is refused with a message naming the field.
* List-of-strings fields: ``$eq``, ``$in`` and the range operators match if ANY element
  matches; ``$ne`` and ``$nin`` are their negations (no element matches).
* A missing field matches only ``$ne``, ``$nin`` and ``$exists: false``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from workers.gil_turns import Turns

if TYPE_CHECKING:
    from workers.work_budget import WorkBudget

Metadata = dict[str, Any] | None
Predicate = Callable[[Metadata], bool]

MAX_DEPTH = 16
MAX_NODES = 1024
_MISSING = object()
# Rows are tested in chunks sized to take about this long, so the budget is looked at
# often enough (a single row costs at most MAX_NODES tests over one bounded metadata
# object) and rarely enough to cost nothing measurable; between chunks the thread hands
# the interpreter lock to the event loop (workers/gil_turns.py).
CHUNK_TARGET_S = 0.0005
MAX_CHUNK_ROWS = 4096
SET_CHUNK = 4096  # $in/$nin operands added to their set per call
# A set holds at most this many operands; a longer list of one kind fills several.
# Growing one set past 19,660 entries rehashes it into a table of 131,072 slots in a
# single C call: about 2 ms holding the GIL at 50,000 strings (the worker's event loop,
# every tenant's quick queries, waits that long). Up to 16,384 the largest rehash is
# of 4,915 entries, about 0.4 ms; a row then costs one lookup per set (4 at 50,000).
SET_ENTRIES = 16_384


class FilterError(ValueError):
    """A filter that cannot be used; the message is safe to show the client."""


def _kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _same_kind_eq(stored: object, operand: object) -> bool:
    return _kind(stored) == _kind(operand) and stored == operand


def _elements(stored: object) -> Sequence[object]:
    return stored if isinstance(stored, list) else (stored,)


class _Parser:
    def __init__(self) -> None:
        self.nodes = 0
        self.operands = 0

    def filter(self, doc: object, depth: int, where: str) -> Predicate:
        if not isinstance(doc, dict):
            raise FilterError(f"{where} must be an object")
        if not doc:
            if depth == 0:
                return lambda _meta: True
            raise FilterError(f"{where} must not be empty")
        if depth > MAX_DEPTH:
            raise FilterError(f"filter is nested deeper than {MAX_DEPTH} levels")
        parts = [self.clause(key, value, depth) for key, value in doc.items()]
        return parts[0] if len(parts) == 1 else _all(parts)

    def clause(self, key: object, value: object, depth: int) -> Predicate:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"filter has more than {MAX_NODES} conditions")
        if not isinstance(key, str) or not key:
            raise FilterError("filter field names must be non-empty strings")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"'{key}' must be a non-empty list of filters")
            subs = [self.filter(v, depth + 1, f"each entry of '{key}'") for v in value]
            return _all(subs) if key == "$and" else _any(subs)
        if key.startswith("$"):
            raise FilterError(f"unknown top-level operator '{key}'")
        if isinstance(value, dict):
            if not value:
                raise FilterError(f"field '{key}': the operator object must not be empty")
            tests = [self.operator(key, op, operand) for op, operand in value.items()]
            return _field(key, tests)
        return _field(key, [self.operator(key, "$eq", value)])

    def operator(self, field: str, op: object, operand: object) -> Callable[[object], bool]:
        if op in ("$eq", "$ne"):
            if _kind(operand) is None:
                raise FilterError(
                    f"field '{field}': {op} needs a string, number or boolean"
                    + (" (use $in for lists)" if isinstance(operand, list) else "")
                )
            eq = _eq_test(operand)
            return eq if op == "$eq" else _negate(eq)
        if op in ("$in", "$nin"):
            by_kind = _by_kind(operand) if isinstance(operand, list) else None
            if by_kind is None:
                raise FilterError(
                    f"field '{field}': {op} needs a list of strings, numbers or booleans"
                )
            assert isinstance(operand, list)
            self.operands += len(operand)
            member = _in_test(by_kind)
            return member if op == "$in" else _negate(member)
        if op in ("$gt", "$gte", "$lt", "$lte"):
            kind = _kind(operand)
            if kind not in ("number", "string"):
                raise FilterError(f"field '{field}': {op} needs a number or a string")
            return _range_test(str(op), operand, kind)
        if op == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(f"field '{field}': $exists needs true or false")
            return (lambda v: v is not _MISSING) if operand else (lambda v: v is _MISSING)
        raise FilterError(f"field '{field}': unknown operator '{op}'")


def _eq_test(operand: object) -> Callable[[object], bool]:
    def test(stored: object) -> bool:
        if stored is _MISSING:
            return False
        return any(_same_kind_eq(e, operand) for e in _elements(stored))

    return test


def _by_kind(operands: list[object]) -> dict[str, list[set[object]]] | None:
    """The operands as sets, per kind, or None if one is of no kind (refused).

    One group per kind keeps the evaluator's equality: 1 matches 1.0 but not true,
    "1" matches only "1". The common all-strings list (what a large $nin usually
    is) costs one pass. A kind's operands fill sets of at most SET_ENTRIES, so no
    set is ever rehashed big (see SET_ENTRIES). The sets are never changed after this.
    """
    groups: dict[str, list[set[object]]] = {"bool": [set()], "number": [set()], "string": [set()]}
    turns = Turns()  # the lock to the event loop between chunks (workers/gil_turns.py)
    for start in range(0, len(operands), SET_CHUNK):
        turns.step()
        # In chunks: one C call over 50,000 strings would hold the GIL for milliseconds
        # while other tenants' requests on this worker wait for it. A chunk of one kind
        # (the usual case: all strings, or all numbers) is added in C; a mixed one is
        # sorted element by element (a Python loop over 10,000 numbers cost ~2 ms of the
        # GIL, measured with benchmarks.noisy_split).
        chunk = operands[start : start + SET_CHUNK]
        kinds = _CHUNK_KINDS.get(frozenset(map(type, chunk)))
        if kinds is not None:
            sets = groups[kinds]
            if len(sets[-1]) + len(chunk) > SET_ENTRIES:
                sets.append(set())
            sets[-1].update(chunk)
            continue
        for o in chunk:
            kind = _kind(o)
            if kind is None:
                return None
            groups[kind][-1].add(o)
    return groups


# The element types (JSON gives exactly these, never subclasses) a chunk of one kind has.
_CHUNK_KINDS: dict[frozenset[type], str] = {
    frozenset({str}): "string",
    frozenset({int}): "number",
    frozenset({float}): "number",
    frozenset({int, float}): "number",
    frozenset({bool}): "bool",
}


def _in_test(by_kind: dict[str, list[set[object]]]) -> Callable[[object], bool]:
    single = {kind: sets[0] for kind, sets in by_kind.items() if len(sets) == 1}

    def member(element: object) -> bool:
        kind = _kind(element)
        if kind is None:
            return False
        one = single.get(kind)
        if one is not None:
            return element in one
        return any(element in part for part in by_kind[kind])

    def test(stored: object) -> bool:
        if stored is _MISSING:
            return False
        if isinstance(stored, list):
            return any(member(e) for e in stored)
        return member(stored)

    return test


def _range_test(op: str, operand: Any, kind: str) -> Callable[[object], bool]:
    compare: Callable[[Any], bool] = {
        "$gt": lambda e: e > operand,
        "$gte": lambda e: e >= operand,
        "$lt": lambda e: e < operand,
        "$lte": lambda e: e <= operand,
    }[op]

    def test(stored: object) -> bool:
        if stored is _MISSING:
            return False
        return any(_kind(e) == kind and compare(e) for e in _elements(stored))

    return test


def _negate(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda stored: not test(stored)


def _field(name: str, tests: list[Callable[[object], bool]]) -> Predicate:
    def predicate(meta: Metadata) -> bool:
        stored = _MISSING if meta is None else meta.get(name, _MISSING)
        return all(t(stored) for t in tests)

    return predicate


def _all(parts: list[Predicate]) -> Predicate:
    return lambda meta: all(p(meta) for p in parts)


def _any(parts: list[Predicate]) -> Predicate:
    return lambda meta: any(p(meta) for p in parts)


def compile_filter(doc: object) -> tuple[Predicate, int]:
    """Check a filter document; return a predicate over one row's metadata and the
    number of ``$in``/``$nin`` operands it holds (part of the request's cost)."""
    parser = _Parser()
    predicate = parser.filter(doc, 0, "filter")
    return predicate, parser.operands


def parse_filter(doc: object) -> Predicate:
    """Check a filter document and return a predicate over one row's metadata."""
    return compile_filter(doc)[0]


def matching_rows(
    predicate: Predicate, metadata: Sequence[Metadata], budget: WorkBudget
) -> np.ndarray:
    """A boolean mask of the rows whose metadata matches, stopping if the budget runs out."""
    mask = np.zeros(len(metadata), dtype=bool)
    start, size = 0, 1
    turns = Turns()  # the lock to the event loop between chunks (workers/gil_turns.py)
    while start < len(metadata):
        turns.step()
        budget.check()
        began = time.perf_counter()
        chunk = metadata[start : start + size]
        mask[start : start + len(chunk)] = [predicate(m) for m in chunk]
        budget.spend(len(chunk))
        start += len(chunk)
        fast = time.perf_counter() - began < CHUNK_TARGET_S
        size = min(size * 2, MAX_CHUNK_ROWS) if fast else max(1, size // 2)
    return mask
