"""Pause/resume file moves survive SIGKILL at every step: one complete copy in use, never zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.collection_spec import parse_collection_spec
from workers.tenant_move import (
    COLD,
    HOT,
    in_use_dir,
    location,
    move_tenant,
    tree_checksums,
)
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT = "cpause"
DIM = 8

# The child runs one move and SIGKILLs itself at the n-th pass of one step.
CHILD = r"""
import os, signal, sys, shutil
from pathlib import Path
import workers.tenant_move as tm

hot, cold, tenant, to, step, nth = sys.argv[1:7]
nth = int(nth)
seen = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if step == "mid_remove":
    original = shutil.rmtree
    def rmtree(path, *a, **k):
        if ".trash-" in str(path):
            die()
        return original(path, *a, **k)
    shutil.rmtree = rmtree
else:
    def crash_at(name):
        if name == step:
            seen.append(1)
            if len(seen) >= nth:
                die()
    tm._step = crash_at
tm.move_tenant(Path(hot), Path(cold), tenant, to, 1 << 30)
print("finished", flush=True)
"""

# Every step boundary of the move, plus inside the copy and inside the removal.
STEPS = [
    ("copied_file", 2),
    ("copied", 1),
    ("verified", 1),
    ("renamed", 1),
    ("switched", 1),
    ("mid_remove", 1),
]


def _make_tenant(hot: Path) -> dict[str, np.ndarray]:
    store = TenantStore.open(hot, TENANT, 1024)  # tiny WAL budget: segments get written
    vectors = {}
    # flat: an HNSW graph may still be growing in the background, which changes its file
    for name, index in (("docs", "flat"), ("imgs", "flat")):
        spec = {"collection": name, "dimension": DIM, "metric": "l2", "index": index}
        store.create_collection(parse_collection_spec(spec))
        rng = np.random.default_rng(len(name))
        data = rng.standard_normal((300, DIM), dtype=np.float32)
        for start in range(0, 300, 50):
            ids = [f"{name}-{i}" for i in range(start, start + 50)]
            store.collection(name).upsert(
                ids, [{"n": i} for i in range(50)], data[start : start + 50]
            )
        vectors[name] = data
    store.close()
    return vectors


def _run_child(hot: Path, cold: Path, to: str, step: str, nth: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(hot), str(cold), TENANT, to, step, str(nth)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode


def _assert_one_complete_copy(hot: Path, cold: Path, want: dict[str, object]) -> None:
    used = in_use_dir(hot, cold, TENANT)
    assert used.is_dir(), "the copy in use must exist"
    assert tree_checksums(used) == want, f"the copy in use ({used}) is incomplete or changed"


@pytest.mark.parametrize("to", [COLD, HOT])
def test_sigkill_at_every_step_of_the_move(tmp_path: Path, to: str) -> None:
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    vectors = _make_tenant(hot)
    want = tree_checksums(hot / TENANT)
    assert want, "the tenant has files"
    source = HOT if to == COLD else COLD
    if source == COLD:
        move_tenant(hot, cold, TENANT, COLD)
    for step, nth in STEPS:
        assert location(hot, TENANT) == source
        code = _run_child(hot, cold, to, step, nth)
        assert code == -signal.SIGKILL, f"the child should have died at {step}#{nth}"
        _assert_one_complete_copy(hot, cold, want)
        # A restart finishes the move idempotently (twice is the same as once) ...
        move_tenant(hot, cold, TENANT, to)
        move_tenant(hot, cold, TENANT, to)
        assert location(hot, TENANT) == to
        _assert_one_complete_copy(hot, cold, want)
        other = (hot if to == COLD else cold) / TENANT
        assert not other.exists(), "the old copy is removed once the new one is in use"
        assert not [p for p in (hot, cold) for p in p.glob(f".{TENANT}.partial")]
        # ... and the next round starts from the source side again.
        move_tenant(hot, cold, TENANT, source)
        _assert_one_complete_copy(hot, cold, want)
    # Data served after the round trips: every vector is there, bit for bit.
    move_tenant(hot, cold, TENANT, HOT)
    store = TenantStore.open(hot, TENANT, 1 << 30)
    try:
        for name, data in vectors.items():
            ids, _meta, got = store.collection(name).fetch([f"{name}-{i}" for i in range(300)])
            assert len(ids) == 300
            np.testing.assert_array_equal(got, data)
    finally:
        store.close()


def test_crash_can_also_be_rolled_back(tmp_path: Path) -> None:
    """A pause killed before the switch, then resumed: the hot copy stays, the cold one goes."""
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    _make_tenant(hot)
    want = tree_checksums(hot / TENANT)
    assert _run_child(hot, cold, COLD, "renamed", 1) == -signal.SIGKILL
    assert (cold / TENANT).is_dir() and location(hot, TENANT) == HOT
    move_tenant(hot, cold, TENANT, HOT)
    assert not (cold / TENANT).exists()
    assert tree_checksums(hot / TENANT) == want


def test_worker_refuses_to_load_a_cold_tenant(tmp_path: Path) -> None:
    import asyncio

    from workers.protocol import Frame, Op
    from workers.service import WorkerService
    from workers.tenant_registry import TenantRegistry

    hot, cold = tmp_path / "hot", tmp_path / "cold"
    _make_tenant(hot)
    svc = WorkerService(TenantRegistry(hot, 1 << 30), cold_dir=cold)

    async def go() -> None:
        moved, _ = await svc.handle(
            Frame({"op": Op.MOVE_TENANT.value, "rid": 1, "tenant": TENANT, "to": "cold"})
        )
        assert moved["ok"] and moved["location"] == "cold"
        assert moved["vectors"] == 600 and len(moved["collections"]) == 2
        reply, _ = await svc.handle(
            Frame({"op": Op.ASSIGN.value, "rid": 2, "tenant": TENANT, "epoch": 5})
        )
        assert not reply["ok"] and "paused" in reply["error"]["message"]
        assert not (hot / TENANT).exists(), "no empty hot copy appears next to the cold one"
        summary, _ = await svc.handle(
            Frame({"op": Op.TENANT_SUMMARY.value, "rid": 3, "tenant": TENANT})
        )
        assert summary["vectors"] == 600

    asyncio.run(go())
    assert os.listdir(cold) == [TENANT]
