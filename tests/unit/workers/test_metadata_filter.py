"""Metadata filters: every operator, nesting, missing fields, list fields, refusals."""

from __future__ import annotations

import pytest

from workers.metadata_filter import FilterError, parse_filter

ROWS = {
    "a": {"color": "red", "n": 1, "ok": True, "tags": ["x", "y"]},
    "b": {"color": "blue", "n": 2.5, "ok": False, "tags": ["y"]},
    "c": {"color": "red", "n": 10},
    "d": {"n": "10", "tags": []},
    "e": None,
}


def matching(doc: object) -> list[str]:
    predicate = parse_filter(doc)
    return sorted(k for k, meta in ROWS.items() if predicate(meta))


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, ["a", "b", "c", "d", "e"]),
        ({"color": "red"}, ["a", "c"]),
        ({"color": {"$eq": "red"}}, ["a", "c"]),
        ({"color": {"$ne": "red"}}, ["b", "d", "e"]),  # missing fields match $ne
        ({"n": {"$gt": 1}}, ["b", "c"]),  # "10" is a string: never compared with numbers
        ({"n": {"$gte": 1}}, ["a", "b", "c"]),
        ({"n": {"$lt": 2.5}}, ["a"]),
        ({"n": {"$lte": 2.5}}, ["a", "b"]),
        ({"n": {"$gt": 1, "$lt": 10}}, ["b"]),
        ({"n": {"$gte": "1"}}, ["d"]),  # strings compare with strings only
        ({"n": 1}, ["a"]),
        ({"ok": True}, ["a"]),
        ({"n": True}, []),  # true is not 1
        ({"ok": 1}, []),
        ({"color": {"$in": ["red", "green"]}}, ["a", "c"]),
        ({"color": {"$nin": ["red"]}}, ["b", "d", "e"]),
        ({"color": {"$in": []}}, []),
        ({"color": {"$exists": True}}, ["a", "b", "c"]),
        ({"color": {"$exists": False}}, ["d", "e"]),
        ({"tags": "y"}, ["a", "b"]),  # any element matches
        ({"tags": {"$in": ["x", "z"]}}, ["a"]),
        ({"tags": {"$ne": "y"}}, ["c", "d", "e"]),  # no element matches
        ({"tags": {"$nin": ["x"]}}, ["b", "c", "d", "e"]),
        ({"tags": {"$gt": "x"}}, ["a", "b"]),
        ({"tags": {"$exists": True}}, ["a", "b", "d"]),
        ({"$and": [{"color": "red"}, {"n": {"$gt": 5}}]}, ["c"]),
        ({"$or": [{"color": "blue"}, {"n": 10}]}, ["b", "c"]),
        ({"$or": [{"$and": [{"color": "red"}, {"ok": True}]}, {"n": "10"}]}, ["a", "d"]),
        ({"color": "red", "ok": {"$exists": False}}, ["c"]),  # keys are ANDed
        ({"$and": [{"$or": [{"n": 1}, {"n": 10}]}, {"color": {"$in": ["red"]}}]}, ["a", "c"]),
    ],
)
def test_filter_semantics(doc: object, expected: list[str]) -> None:
    assert matching(doc) == expected


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "filter must be an object"),
        ({"price": {"$gt": True}}, "field 'price': $gt needs a number or a string"),
        ({"price": {"$lt": [1]}}, "field 'price': $lt needs a number or a string"),
        ({"price": {"$in": 3}}, "field 'price': $in needs a list of strings, numbers or booleans"),
        ({"price": {"$nin": [{"a": 1}]}}, "field 'price': $nin needs a list"),
        ({"tags": ["a"]}, "field 'tags': $eq needs a string, number or boolean (use $in"),
        ({"tags": None}, "field 'tags': $eq needs a string, number or boolean"),
        ({"tags": {"$ne": None}}, "field 'tags': $ne needs a string, number or boolean"),
        ({"price": {"$exists": 1}}, "field 'price': $exists needs true or false"),
        ({"price": {"$regex": "x"}}, "field 'price': unknown operator '$regex'"),
        ({"price": {"cheap": 1}}, "field 'price': unknown operator 'cheap'"),
        ({"price": {}}, "field 'price': the operator object must not be empty"),
        ({"$not": {"a": 1}}, "unknown top-level operator '$not'"),
        ({"$and": []}, "'$and' must be a non-empty list of filters"),
        ({"$or": {"a": 1}}, "'$or' must be a non-empty list of filters"),
        ({"$or": [1]}, "each entry of '$or' must be an object"),
        ({"$and": [{}]}, "each entry of '$and' must not be empty"),
        ({"": 1}, "filter field names must be non-empty strings"),
    ],
)
def test_malformed_filters_are_refused_naming_the_field(doc: object, message: str) -> None:
    with pytest.raises(FilterError) as err:
        parse_filter(doc)
    assert str(err.value).startswith(message)


def test_deep_or_huge_filters_are_refused() -> None:
    deep: dict = {"a": 1}
    for _ in range(40):
        deep = {"$and": [deep]}
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter(deep)
    with pytest.raises(FilterError, match="more than"):
        parse_filter({"$or": [{"a": i} for i in range(2000)]})
