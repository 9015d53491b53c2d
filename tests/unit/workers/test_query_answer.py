"""The rendered answers: the binary one carries exactly what the JSON one does.

The SDK's decoder (vectorpanda_client/binary.py) reads the worker's binary answer back
into the JSON answer's shape, and an older worker's JSON answer converted by the
coordinator gives the same bytes as the worker's own binary rendering.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from vectorpanda_client.binary import decode_answer
from workers.query_answer import binary_from_json, render_answer, render_binary

RNG = np.random.default_rng(8)


def _results(counts: list[int], metadata: bool) -> list[dict[str, Any]]:
    out = []
    for n, count in enumerate(counts):
        result: dict[str, Any] = {
            "ids": [f"id-{n}-{i}" for i in range(count)],
            "scores": RNG.standard_normal(count).astype(np.float32).tolist(),
        }
        if metadata:
            result["metadata"] = [None if i % 2 else {"i": i, "s": "é"} for i in range(count)]
        out.append(result)
    return out


@pytest.mark.parametrize(
    ("form", "counts"),
    # a single query vector has one result; a batch has several
    [("single", [3]), ("single", [0]), ("batch", [3]), ("batch", [0]), ("batch", [5, 0, 2])],
)
@pytest.mark.parametrize("metadata", [False, True])
@pytest.mark.parametrize("values", [False, True])
def test_binary_and_json_answers_agree(
    form: str, metadata: bool, values: bool, counts: list[int]
) -> None:
    results = _results(counts, metadata)
    vectors = RNG.standard_normal((sum(counts), 6)).astype(np.float32) if values else None
    as_json = render_answer(results, vectors, form).tobytes()
    as_binary = render_binary(results, vectors, form).tobytes()
    decoded, expected = decode_answer(as_binary), orjson.loads(as_json)
    if form == "single":
        decoded, expected = {"results": [decoded]}, {"results": [expected]}
    for got, want in zip(decoded["results"], expected["results"], strict=True):
        assert [m["id"] for m in got["matches"]] == [m["id"] for m in want["matches"]]
        assert [m["score"] for m in got["matches"]] == [m["score"] for m in want["matches"]]
        assert [m.get("metadata") for m in got["matches"]] == [
            m.get("metadata") for m in want["matches"]
        ]
        for g, w in zip(got["matches"], want["matches"], strict=True):
            assert g.keys() == w.keys()
            if values:
                assert np.array_equal(g["values"], np.asarray(w["values"], np.float32))
    # what the coordinator makes of an older worker's JSON answer: the same bytes
    if counts != [0] or not values:  # an empty answer cannot say its dimension
        assert binary_from_json(as_json, metadata, values) == as_binary
