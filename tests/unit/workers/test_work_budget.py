"""A request's budget on the worker: the deadline in the frame, CANCEL, and the cost."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.unit.workers.test_worker_service import TENANT, _error, call, data
from workers.protocol import decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers.work_budget import WorkBudget

DIM = 4


@pytest.fixture
async def service(tmp_path: Path):
    svc = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    await call(svc, "assign", tenant=TENANT, epoch=3)
    await data(svc, "create_collection", collection="c", dimension=DIM, metric="l2", index="flat")
    vectors = np.random.default_rng(1).standard_normal((500, DIM)).astype(np.float32)
    ids = [f"v{i}" for i in range(500)]
    meta = [{"n": i, "tags": [f"t{j}" for j in range(50)]} for i in range(500)]
    await data(svc, "upsert", {"vectors": vectors}, collection="c", ids=ids, metadata=meta)
    yield svc
    await svc.release_all()


QUERY = {"collection": "c", "top_k": 3}


async def test_a_filtered_query_reports_rows_and_operands_as_its_cost(
    service: WorkerService,
) -> None:
    queries = np.zeros((2, DIM), np.float32)
    flt = {"n": {"$nin": list(range(1000))}, "tags": {"$exists": True}}
    header, _ = await data(service, "query", {"queries": queries}, **QUERY, filter=flt)
    assert header["ok"] and header["results"] == [{"ids": [], "scores": []}] * 2
    assert header["cost"] == 500 + 1000  # every row tested, every operand compiled
    header, _ = await data(service, "query", {"queries": queries}, **QUERY)
    assert header["cost"] == 2 * 500  # two query vectors compared with every row


async def test_a_frame_whose_deadline_has_passed_does_no_work(service: WorkerService) -> None:
    queries = np.zeros((1, DIM), np.float32)
    header, _ = await data(
        service, "query", {"queries": queries}, **QUERY, filter={"n": 1}, deadline_ms=0
    )
    code, message = _error(header)
    assert code == "unavailable" and "deadline" in message


async def test_cancel_stops_a_long_filter_scan(service: WorkerService) -> None:
    # 600 range tests over 50 tags per row: seconds of work for 500 rows, if run through.
    slow = {"$or": [{"tags": {"$gt": f"z{i}"}} for i in range(600)]}
    wire = encode_frame(
        {"op": "query", "rid": 7, "tenant": TENANT, "epoch": 3, **QUERY, "filter": slow},
        {"queries": np.zeros((1, DIM), np.float32)},
    )
    budget = WorkBudget()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(service.handle(decode_frame(wire), budget))
    # Cancel once the scan has spent some rows (not after a fixed sleep: on a loaded
    # machine the scan's thread may not have started yet, or a quiet one may be far in).
    give_up = loop.time() + 10
    while budget.cost == 0 and not task.done() and loop.time() < give_up:
        await asyncio.sleep(0.005)
    assert budget.cost > 0, "the scan never started"
    cancelled_at = loop.time()
    threading.Timer(0, budget.cancel).start()  # as the CANCEL frame would, from outside
    reply, _ = await task
    assert _error(reply) == ("unavailable", "the request was cancelled")
    assert loop.time() - cancelled_at < 1.5
    assert 0 < reply["cost"] < 500, "stopped part-way, and says how far it got"
