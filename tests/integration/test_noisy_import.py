"""A tenant bulk-importing JSON rows as fast as it can leaves its neighbour's latency alone
(issue 12).

A 1,000 x 384 upsert as JSON rows is about 7.6 MB. Parsed on the coordinator's event loop,
it held every other client's requests 40-80 ms: beside ``wrk`` sending such upserts on 8
connections, a neighbour's median query time went from about 3 ms to 125-132 ms. Such
bodies are now parsed by the query desk's helper process (api/lean_upsert.py). The
median is checked (p99 stays 3-4x on a quiet machine: the copies of each body and its
frame are still the event loop's), with a floor for a loaded CI machine, in up to
``ROUNDS`` rounds; any error for the neighbour fails at once.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.noisy_split import BULK_DIM, _flood_wrk, _upsert_bodies, _wrk_answers
from tests.flood import FLOOD_RAMP_S, prepare_collection, require_wrk, run_steady
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

ALONE_S = DURING_S = 4.0
ROUNDS = 3
P50_FLOOR_S = 0.010  # a loaded 2-core CI machine's median alone, about
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("vp-import"), workers=1) as stack:
        yield stack


def test_a_json_bulk_import_leaves_its_neighbour_alone(one_worker: Stack, tmp_path: Path) -> None:
    require_wrk()
    stack = one_worker
    importer = stack.new_client("importer", tier="premium")
    quiet = stack.new_client("quiet", tier="standard")
    with stack.client(importer) as a:
        spec = {"name": "bulk", "dimension": BULK_DIM, "metric": "l2"}
        assert a.post("/v1/collections", json=spec).status_code == 201
        # the first large body starts the desk's helper (the route parses it meanwhile)
        for _ in range(2):
            r = a.post("/v1/collections/bulk/upsert", content=_upsert_bodies()[0], headers=JSON)
            assert r.status_code == 200, r.text
            time.sleep(1.0)
    misses = []
    with stack.client(quiet) as b:
        prepare_collection(b, "flood")
        for _ in range(ROUNDS):
            (alone,) = run_steady({"b": b}, ALONE_S)
            wrk = _flood_wrk(stack.url, importer, DURING_S + 2 * FLOOD_RAMP_S, tmp_path, "upserts")
            try:
                time.sleep(FLOOD_RAMP_S)
                (during,) = run_steady({"b": b}, DURING_S)
            finally:
                out, _ = wrk.communicate(timeout=120)
            assert not alone.errors and not during.errors, (alone.errors, during.errors)
            imported = _wrk_answers(out)
            assert imported >= 5, f"the importer was not really importing:\n{out}"
            before, beside = statistics.median(alone.latencies), statistics.median(during.latencies)
            report = (
                f"neighbour's median {before * 1000:.1f} ms alone, {beside * 1000:.1f} ms beside "
                f"{imported} imports of 1,000 x {BULK_DIM} as JSON rows"
            )
            print(report)
            if beside <= 2 * max(before, P50_FLOOR_S):
                return
            misses.append(report)
    raise AssertionError("beside the import, in every round:\n" + "\n".join(misses))


def test_the_import_was_stored(one_worker: Stack) -> None:
    """The flood's upserts were real writes: the importer's collection holds its 1,000 ids,
    their metadata from the last batch written."""
    importer = one_worker.new_client("importer-2", tier="premium")
    with one_worker.client(importer) as a:
        spec = {"name": "bulk", "dimension": BULK_DIM, "metric": "l2"}
        assert a.post("/v1/collections", json=spec).status_code == 201
        for body in _upsert_bodies():
            r = a.post("/v1/collections/bulk/upsert", content=body, headers=JSON)
            assert r.status_code == 200 and r.json() == {"upserted": 1000}
        assert a.post("/v1/collections/bulk/count", json={}).json() == {"count": 1000}
        found = a.post("/v1/collections/bulk/fetch", json={"ids": ["b0", "b999"]}).json()
        assert found["vectors"]["b999"]["metadata"] == {"n": 999, "batch": 1}
