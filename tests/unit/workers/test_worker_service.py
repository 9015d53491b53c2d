"""The dispatcher answers only for tenants it owns at the right epoch, with the exact payloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.protocol import decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry

TENANT = "acme_1"


@pytest.fixture
async def service(tmp_path: Path):
    svc = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    yield svc
    await svc.release_all()


async def call(
    svc: WorkerService, op: str, arrays: dict[str, np.ndarray] | None = None, **header: Any
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Send a request through real encoding and decode the reply, like the socket would."""
    wire = encode_frame({"op": op, "rid": 11, **header}, arrays)
    reply, reply_arrays = await svc.handle(decode_frame(wire))
    frame = decode_frame(encode_frame(reply, reply_arrays))
    assert frame.header["rid"] == 11
    return frame.header, frame.arrays


async def data(svc: WorkerService, op: str, arrays=None, epoch: int = 3, **header: Any):
    return await call(svc, op, arrays, tenant=TENANT, epoch=epoch, **header)


def _error(header: dict[str, Any]) -> tuple[str, str]:
    assert header["ok"] is False
    return header["error"]["code"], header["error"]["message"]


async def test_frames_for_unassigned_tenant_are_refused_and_touch_no_file(
    tmp_path: Path, service: WorkerService
) -> None:
    for op, extra in [
        ("create_collection", {"collection": "c", "dimension": 2, "metric": "l2", "index": "flat"}),
        ("list_collections", {}),
        ("usage", {}),
        ("delete_tenant", {}),
    ]:
        header, _ = await data(service, op, **extra)
        assert _error(header)[0] == "not_owner"
    assert not (tmp_path / "hot").exists()


async def test_wrong_epoch_is_refused(tmp_path: Path, service: WorkerService) -> None:
    header, _ = await call(service, "assign", tenant=TENANT, epoch=3)
    assert header["ok"] is True
    for epoch in (2, 4, "3", True, None):
        header, _ = await data(service, "create_collection", epoch=epoch, collection="c",
                               dimension=2, metric="l2", index="flat")  # fmt: skip
        assert _error(header)[0] == "not_owner"
    assert sorted(p.name for p in (tmp_path / "hot" / TENANT).iterdir()) == [".lock"]
    header, _ = await call(service, "release", tenant=TENANT, epoch=2)
    assert _error(header)[0] == "not_owner"
    header, _ = await call(service, "release", tenant=TENANT, epoch=3)
    assert header["ok"] is True
    header, _ = await data(service, "list_collections")
    assert _error(header)[0] == "not_owner"


async def test_assign_refuses_traversal_tenant_ids(tmp_path: Path, service: WorkerService) -> None:
    for tenant in ("../x", "a/b", "..", "A"):
        header, _ = await call(service, "assign", tenant=tenant, epoch=1)
        assert _error(header)[0] == "invalid"
    assert not (tmp_path / "hot").exists()


async def test_assign_fails_while_another_worker_holds_the_tenant(tmp_path: Path) -> None:
    first = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    second = WorkerService(TenantRegistry(tmp_path / "hot", 1 << 30))
    assert (await call(first, "assign", tenant=TENANT, epoch=1))[0]["ok"] is True
    header, _ = await call(second, "assign", tenant=TENANT, epoch=2)
    assert _error(header)[0] == "unavailable"
    assert _error((await call(second, "usage", tenant=TENANT, epoch=2))[0])[0] == "not_owner"
    await first.release_all()
    assert (await call(second, "assign", tenant=TENANT, epoch=2))[0]["ok"] is True
    await second.release_all()


async def test_full_data_plane_round_trip(service: WorkerService) -> None:
    await call(service, "assign", tenant=TENANT, epoch=3)
    header, _ = await data(service, "create_collection", collection="docs", dimension=3,
                           metric="cosine", index="flat")  # fmt: skip
    info = header["collection"]
    assert set(info) == {"name", "dimension", "metric", "index", "vector_count", "created_at"}
    assert (info["name"], info["dimension"], info["metric"]) == ("docs", 3, "cosine")
    header, _ = await data(service, "create_collection", collection="docs", dimension=3,
                           metric="cosine", index="flat")  # fmt: skip
    assert _error(header) == ("conflict", "collection 'docs' already exists")

    vectors = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3]], np.float32)
    header, _ = await data(service, "upsert", {"vectors": vectors}, collection="docs",
                           ids=["a", "b", "c"], metadata=[{"k": 1}, None, {"k": 3}])  # fmt: skip
    assert header == {"op": "reply", "rid": 11, "ok": True, "upserted": 3}
    header, _ = await data(service, "upsert", {"vectors": vectors[:, :2].copy()},
                           collection="docs", ids=["a", "b", "c"], metadata=[None] * 3)  # fmt: skip
    code, message = _error(header)
    assert code == "invalid" and "3" in message and "2" in message

    queries = np.array([[0.1, 0.2, 1], [0.3, 1, 0]], np.float32)
    header, arrays = await data(service, "query", {"queries": queries}, collection="docs",
                                top_k=2, include_metadata=True, include_values=True,
                                filter=None, ef_search=None)  # fmt: skip
    assert [r["ids"] for r in header["results"]] == [["c", "b"], ["b", "a"]]
    norm = float(np.linalg.norm(queries[0]))
    assert header["results"][0]["scores"] == pytest.approx([1 / norm, 0.2 / norm], rel=1e-5)
    assert header["results"][0]["metadata"] == [{"k": 3}, None]
    assert arrays["values"].tobytes() == vectors[[2, 1, 1, 0]].tobytes()

    header, arrays = await data(service, "query", {"queries": queries}, collection="docs",
                                top_k=1, include_metadata=False, include_values=False,
                                filter={"k": 1}, ef_search=None)  # fmt: skip
    assert [r["ids"] for r in header["results"]] == [["a"], ["a"]]
    header, _ = await data(service, "query", {"queries": queries}, collection="docs", top_k=1,
                           filter={"k": {"$gt": True}})  # fmt: skip
    assert _error(header) == (
        "invalid",
        "invalid filter: field 'k': $gt needs a number or a string",
    )

    header, arrays = await data(service, "fetch", collection="docs", ids=["c", "zz", "a"])
    assert header["ids"] == ["c", "a"] and header["metadata"] == [{"k": 3}, {"k": 1}]
    assert arrays["vectors"].tobytes() == vectors[[2, 0]].tobytes()

    header, _ = await data(service, "delete", collection="docs", ids=["a", "zz"])
    assert header["deleted"] == 1
    header, _ = await data(service, "get_collection", collection="docs")
    assert header["collection"]["vector_count"] == 2
    header, _ = await data(service, "usage")
    assert header["collections"] == 1 and header["vectors"] == 2 and header["bytes"] > 0
    header, _ = await data(service, "list_collections")
    assert [c["name"] for c in header["collections"]] == ["docs"]
    assert (await data(service, "delete_collection", collection="docs"))[0]["ok"] is True
    header, _ = await data(service, "get_collection", collection="docs")
    assert _error(header) == ("not_found", "collection 'docs' not found")


async def test_hnsw_collection_reports_its_parameters(service: WorkerService) -> None:
    await call(service, "assign", tenant=TENANT, epoch=3)
    header, _ = await data(service, "create_collection", collection="h", dimension=3,
                           metric="l2", index="hnsw", hnsw={"m": 16})  # fmt: skip
    assert header["collection"]["hnsw"] == {"m": 16, "ef_construction": 200}
    header, _ = await data(service, "create_collection", collection="d", dimension=3,
                           metric="l2", index="hnsw", hnsw=None)  # fmt: skip
    assert header["collection"]["hnsw"] == {"m": 32, "ef_construction": 200}
    header, _ = await data(service, "get_collection", collection="h")
    assert header["collection"]["index"] == "hnsw"
    assert header["collection"]["hnsw"] == {"m": 16, "ef_construction": 200}


async def test_delete_tenant_removes_every_file(tmp_path: Path, service: WorkerService) -> None:
    await call(service, "assign", tenant=TENANT, epoch=3)
    await data(service, "create_collection", collection="docs", dimension=2, metric="l2",
               index="flat")  # fmt: skip
    assert (tmp_path / "hot" / TENANT / "docs").is_dir()
    assert (await data(service, "delete_tenant"))[0]["ok"] is True
    assert list((tmp_path / "hot").iterdir()) == []
    header, _ = await data(service, "list_collections")
    assert header["collections"] == []


async def test_bad_arguments_are_invalid(service: WorkerService) -> None:
    await call(service, "assign", tenant=TENANT, epoch=3)
    await data(service, "create_collection", collection="docs", dimension=2, metric="l2",
               index="flat")  # fmt: skip
    ok_vectors = {"vectors": np.ones((1, 2), np.float32)}
    cases = [
        ("upsert", ok_vectors, {"ids": [""], "metadata": [None]}),
        ("upsert", ok_vectors, {"ids": ["a"], "metadata": [None, None]}),
        ("upsert", ok_vectors, {"ids": ["a"], "metadata": ["x"]}),
        ("upsert", {"vectors": np.ones((1, 2), np.float64)}, {"ids": ["a"], "metadata": [None]}),
        ("upsert", None, {"ids": ["a"], "metadata": [None]}),
        ("query", {"queries": np.ones((1, 2), np.float32)}, {"top_k": 0}),
        ("query", {"queries": np.ones((1, 2), np.float32)}, {"top_k": 1, "include_values": 1}),
        ("fetch", None, {"ids": "a"}),
        ("get_collection", None, {"collection": "../../etc"}),
    ]
    for op, arrays, extra in cases:
        header, _ = await data(service, op, arrays, **{"collection": "docs", **extra})
        assert _error(header)[0] == "invalid", (op, extra)
    assert (await data(service, "get_collection", collection="docs"))[0]["collection"][
        "vector_count"
    ] == 0


async def test_unexpected_failure_is_internal_and_generic(
    service: WorkerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await call(service, "assign", tenant=TENANT, epoch=3)

    def boom(self: object) -> None:
        raise RuntimeError("/secret/path/of/other_tenant")

    monkeypatch.setattr("workers.tenant_store.TenantStore.usage", boom)
    header, _ = await data(service, "usage")
    assert _error(header) == ("internal", "internal error in worker")


async def test_unknown_op_is_invalid(service: WorkerService) -> None:
    header, _ = await call(service, "frobnicate")
    assert _error(header)[0] == "invalid"


async def test_idle_tenants_are_unloaded_under_the_memory_budget_and_reload(
    tmp_path: Path,
) -> None:
    svc = WorkerService(
        TenantRegistry(tmp_path / "hot", 1 << 30),
        memory_budget_bytes=300_000,
        memory_check_interval_s=0,
    )
    vectors = np.random.default_rng(1).standard_normal((400, 64)).astype(np.float32)
    try:
        for n, tenant in enumerate(["t_one", "t_two", "t_three"]):
            await call(svc, "assign", tenant=tenant, epoch=1)
            await call(svc, "create_collection", tenant=tenant, epoch=1, collection="c",
                       dimension=64, metric="l2", index="hnsw" if n == 0 else "flat")  # fmt: skip
            header, _ = await call(svc, "upsert", {"vectors": vectors}, tenant=tenant, epoch=1,
                                   collection="c", ids=[f"v{i}" for i in range(400)])  # fmt: skip
            assert header["ok"] is True
            await svc.enforce_memory_budget(keep=tenant)
        # A check the last request started in the background may still be unloading.
        await svc.settled()
        # 400 x 64 float32 is ~100 kB per tenant (more for hnsw): the oldest went first.
        assert svc.registry.tenant_memory("t_one") == 0
        assert svc.registry.tenant_memory("t_three") > 0
        assert svc.registry.memory_bytes <= 300_000
        assert svc.unloads >= 1
        # Transparent reload: same answers, still owned, nothing lost.
        header, _ = await call(svc, "query", {"queries": vectors[7:8]}, tenant="t_one", epoch=1,
                               collection="c", top_k=1)  # fmt: skip
        assert header["results"][0]["ids"] == ["v7"]
        assert svc.registry.tenant_memory("t_one") > 0
        header, _ = await call(svc, "usage", tenant="t_two", epoch=1)
        assert header["vectors"] == 400
    finally:
        await svc.release_all()


async def test_filters_quotas_and_delete_by_filter_over_the_wire(service: WorkerService) -> None:
    await call(service, "assign", tenant=TENANT, epoch=3)
    header, _ = await data(service, "create_collection", collection="c", dimension=2,
                           metric="l2", index="flat", max_collections=1)  # fmt: skip
    assert header["ok"] is True
    header, _ = await data(service, "create_collection", collection="d", dimension=2,
                           metric="l2", index="flat", max_collections=1)  # fmt: skip
    assert _error(header)[0] == "quota_exceeded"
    ids = [f"v{i}" for i in range(6)]
    meta = [{"even": i % 2 == 0, "i": i} for i in range(6)]
    vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
    header, _ = await data(service, "upsert", {"vectors": vectors}, collection="c", ids=ids,
                           metadata=meta, max_vectors=5)  # fmt: skip
    code, message = _error(header)
    assert (
        code == "quota_exceeded" and "has 0 vectors, this write adds 6, the limit is 5" in message
    )
    header, _ = await data(service, "upsert", {"vectors": vectors}, collection="c", ids=ids,
                           metadata=meta, max_vectors=None)  # fmt: skip
    assert header["upserted"] == 6
    header, _ = await data(service, "query", {"queries": vectors[:1]}, collection="c", top_k=10,
                           filter={"$and": [{"even": True}, {"i": {"$gte": 2}}]})  # fmt: skip
    assert header["results"][0]["ids"] == ["v2", "v4"]
    for bad in ({"i": {"$gt": [1]}}, {"$nope": 1}, "x"):
        header, _ = await data(service, "delete", collection="c", filter=bad)
        assert _error(header)[0] == "invalid"
    header, _ = await data(service, "delete", collection="c", filter={})
    assert _error(header)[0] == "invalid"
    header, _ = await data(service, "delete", collection="c", filter={"even": False})
    assert header["deleted"] == 3
    header, _ = await data(service, "get_collection", collection="c")
    assert header["collection"]["vector_count"] == 3
