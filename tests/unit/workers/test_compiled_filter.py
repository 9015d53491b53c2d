"""The compiled filter (set-based $in/$nin) answers exactly as the reference evaluator.

The reference below is the evaluator as it stood before compilation (O(rows x operands)),
kept here as the definition of the semantics: kinds never mix (true is not 1, "1" is not
1), list fields match if any element does, a missing field matches only the negations.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.errors import StoreError
from workers.metadata_filter import (
    SET_CHUNK,
    SET_ENTRIES,
    FilterError,
    compile_filter,
    matching_rows,
    parse_filter,
)
from workers.work_budget import WorkBudget

_MISSING = object()


def _kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _eq(stored: object, operand: object) -> bool:
    return _kind(stored) == _kind(operand) and stored == operand


def _elements(stored: object) -> list[object]:
    return stored if isinstance(stored, list) else [stored]


def _reference_test(op: str, operand: Any, stored: object) -> bool:
    if op == "$exists":
        return (stored is not _MISSING) == operand
    if op in ("$ne", "$nin"):
        return not _reference_test("$eq" if op == "$ne" else "$in", operand, stored)
    if stored is _MISSING:
        return False
    elements = _elements(stored)
    if op == "$eq":
        return any(_eq(e, operand) for e in elements)
    if op == "$in":
        return any(_eq(e, o) for e in elements for o in operand)
    kind = _kind(operand)
    compare = {
        "$gt": lambda e: e > operand,
        "$gte": lambda e: e >= operand,
        "$lt": lambda e: e < operand,
        "$lte": lambda e: e <= operand,
    }[op]
    return any(_kind(e) == kind and compare(e) for e in elements)


def reference(doc: dict[str, Any], meta: dict[str, Any] | None) -> bool:
    """The old evaluator, straight from the grammar."""
    for key, value in doc.items():
        if key == "$and":
            ok = all(reference(d, meta) for d in value)
        elif key == "$or":
            ok = any(reference(d, meta) for d in value)
        else:
            stored = _MISSING if meta is None else meta.get(key, _MISSING)
            ops = value if isinstance(value, dict) else {"$eq": value}
            ok = all(_reference_test(op, operand, stored) for op, operand in ops.items())
        if not ok:
            return False
    return True


FIELDS = ["a", "b"]
# A small pool of values that collide across kinds (1, 1.0, True, "1"; 0, 0.0, False,
# "0"), so random filters and rows meet on them often.
scalars = st.sampled_from([0, 1, 1.0, 0.0, 2.5, True, False, "1", "0", "a", ""])
stored_values = st.one_of(
    scalars,
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.just("x"), scalars, max_size=1),  # no kind: never matches
    st.none(),
)
rows = st.one_of(
    st.fixed_dictionaries({field: stored_values for field in FIELDS}),
    st.dictionaries(st.sampled_from(FIELDS), stored_values, max_size=2),
    st.none(),
)


comparable = st.sampled_from([0, 1, 0.5, 2.5, "0", "1", "a", ""])
operators = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne"]), scalars),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, max_size=6)),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), comparable),
    st.tuples(st.just("$exists"), st.booleans()),
)
conditions = st.one_of(
    st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), scalars),
    st.builds(
        lambda f, pairs: {f: dict(pairs)},
        st.sampled_from(FIELDS),
        st.lists(operators, min_size=1, max_size=3),
    ),
)


def _combined(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        inner,
        st.builds(
            lambda key, subs: {key: subs},
            st.sampled_from(["$and", "$or"]),
            st.lists(inner, min_size=1, max_size=3),
        ),
        st.builds(lambda x, y: {**x, **y}, inner, inner),  # several keys: AND
    )


filters = _combined(_combined(conditions))


@settings(max_examples=400, deadline=None)
@given(doc=filters, metas=st.lists(rows, min_size=1, max_size=12))
def test_compiled_filter_matches_the_reference_evaluator(
    doc: dict[str, Any], metas: list[dict[str, Any] | None]
) -> None:
    predicate = parse_filter(doc)
    assert [predicate(m) for m in metas] == [reference(doc, m) for m in metas]
    mask = matching_rows(predicate, metas, WorkBudget())
    assert mask.tolist() == [reference(doc, m) for m in metas]


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from(["$in", "$nin", "$eq", "$ne"]),
    operands=st.lists(scalars, max_size=6),
    stored=st.lists(stored_values, min_size=1, max_size=12),
)
def test_one_membership_condition_matches_the_reference(
    op: str, operands: list[Any], stored: list[Any]
) -> None:
    # Dense in the cases where kinds collide (1 / 1.0 / true / "1"), the set lookups' trap.
    operand: Any = operands if op in ("$in", "$nin") else (operands or [0])[0]
    doc = {"a": {op: operand}}
    predicate = parse_filter(doc)
    metas = [{"a": value} for value in stored]
    assert [predicate(m) for m in metas] == [reference(doc, m) for m in metas]


def test_a_large_nin_is_a_set_lookup_per_row() -> None:
    # 50,000 operands over 2,000 rows: the old evaluator made 100 million comparisons.
    operands = [f"x{i:06d}" for i in range(50_000)]
    predicate, cost = compile_filter({"color": {"$nin": operands}, "n": {"$in": [1, True]}})
    assert cost == 50_002
    metas = [{"color": "x000007" if i == 3 else "red", "n": 1.0} for i in range(2_000)]
    started = time.process_time()
    mask = matching_rows(predicate, metas, WorkBudget())
    assert time.process_time() - started < 0.5
    assert mask.sum() == 1_999 and not mask[3]


def test_in_keeps_kinds_apart() -> None:
    predicate = parse_filter({"v": {"$in": [1, "2", False]}})
    matches = [v for v in (1, 1.0, True, 2, "2", "1", False, 0, [0, "2"]) if predicate({"v": v})]
    assert matches == [1, 1.0, "2", False, [0, "2"]]


def test_long_lists_keep_kinds_apart_across_chunks() -> None:
    # Chunks of one kind (all numbers, all strings, all booleans) and a mixed one.
    numbers = list(range(SET_CHUNK)) + [0.5] * 10
    strings = [f"s{i}" for i in range(SET_CHUNK)]
    mixed = [7, "7", True, 2.5] * 10
    predicate = parse_filter({"v": {"$in": numbers + strings + [False] * SET_CHUNK + mixed}})
    values = (3, 3.0, 0.5, 2.5, "3", "s3", True, False, 1, "7", 7, "s", 1.5, [1.5, "s1"])
    matches = [v for v in values if predicate({"v": v})]
    assert matches == [3, 3.0, 0.5, 2.5, "s3", True, False, 1, "7", 7, [1.5, "s1"]]


def test_a_list_longer_than_one_set_matches_in_every_set() -> None:
    # 2.5 sets' worth of strings and of numbers: the operands fill several sets per kind
    # (no set rehashed big), and a value matches whichever set holds it.
    size = SET_ENTRIES * 5 // 2
    strings = [f"s{i}" for i in range(size)]
    numbers = list(range(size))
    inside = parse_filter({"v": {"$in": strings + numbers + [True]}})
    outside = parse_filter({"v": {"$nin": strings + numbers}})
    values = ["s0", f"s{SET_ENTRIES + 5}", f"s{size - 1}", 0, float(size - 1), SET_ENTRIES]
    values += [f"s{size}", size, -1, "0", True, False, [f"s{size}", 2 * SET_ENTRIES]]
    matches = [v for v in values if inside({"v": v})]
    assert matches == [*values[:6], True, [f"s{size}", 2 * SET_ENTRIES]]
    assert [v for v in values if outside({"v": v})] == [f"s{size}", size, -1, "0", True, False]


@pytest.mark.parametrize("bad", [None, [1], {"a": 1}])
def test_a_bad_operand_after_a_chunk_of_strings_is_refused(bad: object) -> None:
    operands: list[object] = [f"s{i}" for i in range(SET_CHUNK + 3)]
    operands.insert(SET_CHUNK + 1, bad)
    with pytest.raises(FilterError, match=r"field 'v': \$nin needs a list"):
        parse_filter({"v": {"$nin": operands}})


def test_matching_rows_stops_when_the_budget_is_cancelled() -> None:
    budget = WorkBudget()
    seen = 0

    def predicate(meta: object) -> bool:
        nonlocal seen
        seen += 1
        if seen == 100:
            budget.cancel()  # as a CANCEL frame would, mid-scan
        return True

    with pytest.raises(StoreError, match="cancelled"):
        matching_rows(predicate, [{}] * 1_000_000, budget)
    assert seen < 10_000, "the scan stopped at the next chunk, not at the end"


def test_matching_rows_stops_at_the_deadline() -> None:
    def slow(meta: object) -> bool:
        time.sleep(0.001)
        return False

    started = time.monotonic()
    with pytest.raises(StoreError, match="deadline"):
        matching_rows(slow, [{}] * 100_000, WorkBudget(0.2))
    assert time.monotonic() - started < 1.0
