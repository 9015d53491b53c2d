"""The query route answers byte for byte as it did before the lean path, errors included.

The expected answers (fixtures/query_golden.json) were recorded from main before the
query path was rewritten (``python -m tests.integration.query_golden``).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.query_golden import FIXTURE, cases, digest, replay, setup
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_every_recorded_query_is_answered_identically(stack: Stack) -> None:
    recorded = json.loads(FIXTURE.read_text())
    todo = cases()
    assert [r["case"] for r in recorded] == [digest(c) for c in todo], "cases changed: re-record"
    keys = setup(stack)
    mismatches = []
    for case, want in zip(todo, recorded, strict=True):
        got = replay(stack, keys, case)
        expected = {k: want[k] for k in got}
        if got != expected:
            mismatches.append((case["request_id"], case["raw"][:120], expected, got))
    assert not mismatches, "\n".join(repr(m) for m in mismatches[:10])
