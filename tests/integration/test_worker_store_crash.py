"""An acknowledged write survives SIGKILL of the worker, also in the middle of compaction."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from workers.maintenance import Maintenance
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT = "crash_tenant"
DIM = 32

# The child: upsert numbered batches forever, printing each batch number only after
# upsert() returned. An optional crash point makes it die at one exact step.
CHILD = r"""
import os, sys, threading, time
from pathlib import Path
import numpy as np
import workers.collection as collection_module
import workers.segment as segment_module
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.tenant_store import TenantStore

hot, start, compact_bytes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
crash, DIM, INDEX = sys.argv[4], int(sys.argv[5]), sys.argv[6]

def batch(b):
    rng = np.random.default_rng(b)
    n = 1 + b % 7
    return [f"b{b}-{i}" for i in range(n)], rng.standard_normal((n, DIM), dtype=np.float32)

# A crash point may fire in the background thread as soon as the store is open: it
# waits until "ready" is out, or the parent would wait for a line that never comes.
announced = threading.Event()

def die_after(module, name, calls=1):
    original, seen = getattr(module, name), []
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        seen.append(1)
        if len(seen) >= calls:
            announced.wait()
            os._exit(137)
        return result
    setattr(module, name, wrapper)

def die_before(module, name):
    def wrapper(*args, **kwargs):
        announced.wait()
        os._exit(137)
    setattr(module, name, wrapper)

store = TenantStore.open(hot, "crash_tenant", compact_bytes)
try:
    store.create_collection(parse_collection_spec(
        {"collection": "c", "dimension": DIM, "metric": "cosine", "index": INDEX}))
except StoreError:
    pass
coll = store.collection("c")
if crash == "mid_segment":
    die_after(segment_module, "_write_synced", calls=1)
elif crash == "after_segment":
    die_after(collection_module, "write_segment")
elif crash == "before_manifest":
    die_before(collection_module, "write_manifest")
elif crash == "after_manifest":
    die_after(collection_module, "write_manifest")
elif crash == "mid_cleanup":
    original = collection_module.remove_orphans
    def partial_cleanup(directory, manifest):
        old_wal = directory / f"wal-{manifest.generation - 1}.log"
        if manifest.generation >= 1 and old_wal.exists():
            old_wal.unlink()
            announced.wait()
            os._exit(137)
        return original(directory, manifest)
    collection_module.remove_orphans = partial_cleanup
elif crash == "before_index_save":
    collection_module.INDEX_SAVE_MAX_AGE_S = 0.0  # save at the first insertion step
    die_before(collection_module, "write_durably")
elif crash == "after_index_save":
    collection_module.INDEX_SAVE_MAX_AGE_S = 0.0
    die_after(collection_module, "write_durably")
print("ready", flush=True)
announced.set()
b = start
while True:
    ids, vectors = batch(b)
    try:
        coll.upsert(ids, [{"batch": b}] * len(ids), vectors)
    except StoreError as exc:  # backpressure (a full fresh buffer): wait, as clients do
        if exc.code != "busy":
            raise
        time.sleep(0.05)
        continue
    print(b, flush=True)
    b += 1
"""


# The test process inspects the files: no background thread of its own may be saving
# an index (a temp file) meanwhile. flush_index() and compact() run in the caller.
QUIET = Maintenance(autostart=False)


def _batch(b: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(b)
    n = 1 + b % 7
    return [f"b{b}-{i}" for i in range(n)], rng.standard_normal((n, DIM), dtype=np.float32)


class Child:
    """The writer subprocess and the batch numbers it acknowledged."""

    def __init__(
        self, hot: Path, start: int, compact_bytes: int, crash: str = "none", index: str = "flat"
    ) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                str(hot),
                str(start),
                str(compact_bytes),
                crash,
                str(DIM),
                index,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked: list[int] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
            elif line.strip():
                self.acked.append(int(line))

    def wait_ready(self) -> None:
        if not self.ready.wait(20):
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"writer never became ready: {err}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-3000:]

    def finish(self) -> int:
        code = self.proc.wait(20)
        self._reader.join(20)
        return code


def _check_store(hot: Path, acked: set[int], attempted_max: int) -> int:
    """Reopen the store: every acked batch whole and exact, nothing torn; return batches found."""
    store = TenantStore.open(hot, TENANT, 1 << 30, maintenance=QUIET)
    try:
        coll = store.collection("c")
        present: dict[int, int] = {}
        for vector_id in coll._table.ids:
            b = int(vector_id[1:].split("-")[0])
            present[b] = present.get(b, 0) + 1
        for b, count in present.items():
            assert b <= attempted_max, f"batch {b} was never written"
            assert count == len(_batch(b)[0]), f"batch {b} is torn"
        missing = acked - set(present)
        assert not missing, f"acknowledged batches lost: {sorted(missing)[:10]}"
        for b in acked:
            ids, vectors = _batch(b)
            found, meta, values = coll.fetch(ids)
            assert found == ids
            assert values.tobytes() == vectors.tobytes()
            assert meta == [{"batch": b}] * len(ids)
        assert coll.vector_count == sum(present.values())
        # Every live vector is found by a query for its own value (graph or fresh buffer).
        sample = sorted(acked)[:: max(1, len(acked) // 15)]
        for b in sample:
            ids, vectors = _batch(b)
            results, _ = coll.query(vectors, 1, False, False)
            assert [r["ids"] for r in results] == [[i] for i in ids]
        return len(present)
    finally:
        store.close()


def test_acknowledged_writes_survive_sigkill_with_compaction(tmp_path: Path) -> None:
    hot = tmp_path / "hot"
    rng = random.Random(1234)
    acked: set[int] = set()
    start = 0
    for run in range(6):
        # Odd runs compact after every write, so the kill almost surely lands mid-compaction.
        child = Child(hot, start, compact_bytes=8 * 1024 if run % 2 == 0 else 1)
        child.wait_ready()
        time.sleep(rng.uniform(0.05, 0.4))
        child.kill()
        acked.update(child.acked)
        assert child.acked, "the writer acknowledged nothing before the kill"
        # The batch in flight at the kill may or may not have landed; nothing beyond it.
        attempted = max(child.acked) + 1
        found = _check_store(hot, acked, attempted)
        assert found >= len(acked)
        start = attempted + 1
    collection_dir = hot / TENANT / "c"
    assert not [p for p in collection_dir.iterdir() if p.name.startswith(".")]


# Crash point -> the generation that must load afterwards (0: old, 1: the new one).
CRASH_POINTS = {
    "mid_segment": 0,
    "after_segment": 0,
    "before_manifest": 0,
    "after_manifest": 1,
    "mid_cleanup": 1,
}
INDEX_CRASH_POINTS = ("before_index_save", "after_index_save")


def _expected_files(coll: object, directory: Path, index: str) -> None:
    generation = coll.generation  # type: ignore[attr-defined]
    names = {p.name for p in directory.iterdir()}
    wals = {n for n in names if n.startswith("wal-")}
    assert f"wal-{generation}.log" in wals
    assert all(int(n[4:-4]) >= generation for n in wals), names
    expected = {"collection.json", "manifest.json", f"seg-{generation}", *wals}
    if index == "hnsw":
        names.discard("hnsw.index")
    assert names == expected


def _writer_then_crash(hot: Path, crash: str, index: str) -> tuple[set[int], int]:
    first = Child(hot, 0, compact_bytes=1 << 30, index=index)
    first.wait_ready()
    while len(first.acked) < 20:
        time.sleep(0.01)
    first.kill()
    acked = set(first.acked)
    start = max(acked) + 2
    # Now a writer whose first upsert makes compaction (or an index save) due; the
    # background thread dies at ``crash`` while the writer keeps writing.
    compact = 1 if crash in CRASH_POINTS else 1 << 30
    second = Child(hot, start, compact_bytes=compact, crash=crash, index=index)
    second.wait_ready()
    code = second.finish()
    assert code == 137, f"the writer exited {code}, not at the crash point: {second.stderr()}"
    acked.update(second.acked)
    return acked, max(second.acked, default=start) + 1


@pytest.mark.parametrize(
    ("crash", "index"),
    [(c, "flat") for c in sorted(CRASH_POINTS)]
    + [(c, "hnsw") for c in ("mid_segment", "after_manifest", "mid_cleanup")]
    + [(c, "hnsw") for c in INDEX_CRASH_POINTS],
)
def test_crash_at_each_compaction_step_leaves_a_whole_collection(
    tmp_path: Path, crash: str, index: str
) -> None:
    hot = tmp_path / "hot"
    acked, attempted = _writer_then_crash(hot, crash, index)
    assert _check_store(hot, acked, attempted) >= len(acked)
    store = TenantStore.open(hot, TENANT, 1 << 30, maintenance=QUIET)
    coll = store.collection("c")
    if crash in CRASH_POINTS:
        assert coll.generation == CRASH_POINTS[crash]
    _expected_files(coll, coll.directory, index)
    if crash == "after_index_save":
        assert (coll.directory / "hnsw.index").is_file()
    # And the collection keeps working: a fresh compaction and reload succeed.
    coll.compact()
    coll.flush_index()
    store.close()
    assert _check_store(hot, acked, attempted) >= len(acked)
    assert sorted(os.listdir(hot / TENANT)) == [".lock", "c"]
    if index == "hnsw":
        # The saved graph is reused: after a reload nothing is waiting to be indexed.
        store = TenantStore.open(hot, TENANT, 1 << 30, maintenance=QUIET)
        hnsw = store.collection("c").index
        assert hnsw is not None and hnsw.fresh_count == 0 and hnsw.node_count > 0
        store.close()
