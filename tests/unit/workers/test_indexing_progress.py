"""GET_COLLECTION tells how many vectors still wait for the HNSW graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workers.maintenance import Maintenance
from workers.protocol import decode_frame, encode_frame
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry

TENANT = "acme_1"


async def test_the_reply_counts_the_vectors_not_yet_in_the_graph(tmp_path: Path) -> None:
    # Graph building stepped by hand: nothing is inserted until the test says so.
    service = WorkerService(
        TenantRegistry(tmp_path / "hot", 1 << 30, maintenance=Maintenance(autostart=False))
    )

    async def send(
        op: str, arrays: dict[str, np.ndarray] | None = None, **header: object
    ) -> dict[str, Any]:
        wire = encode_frame({"op": op, "rid": 1, "tenant": TENANT, "epoch": 1, **header}, arrays)
        reply, _ = await service.handle(decode_frame(wire))
        assert reply["ok"] is True, reply
        return reply

    vectors = np.random.default_rng(2).standard_normal((300, 8), dtype=np.float32)
    ids = [f"v{i}" for i in range(300)]
    try:
        await send("assign")
        await send("create_collection", collection="h", dimension=8, metric="l2", index="hnsw")
        await send("create_collection", collection="f", dimension=8, metric="l2", index="flat")
        for name in ("h", "f"):
            await send(
                "upsert", {"vectors": vectors}, collection=name, ids=ids, metadata=[None] * 300
            )
        hnsw = await send("get_collection", collection="h")
        assert hnsw["collection"]["vector_count"] == 300
        assert hnsw["unindexed"] == 300  # acknowledged, searched exactly, not in the graph
        flat = await send("get_collection", collection="f")
        assert (flat["collection"]["vector_count"], flat["unindexed"]) == (300, 0)

        collection = service.registry.open(TENANT).collection("h")
        assert collection.run_maintenance()  # one step: part of the vectors inserted
        partway = (await send("get_collection", collection="h"))["unindexed"]
        assert 0 < partway < 300
        while collection.run_maintenance():
            pass
        assert (await send("get_collection", collection="h"))["unindexed"] == 0
    finally:
        await service.release_all()
