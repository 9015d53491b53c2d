"""SIGKILL during a backup or a restore: live data untouched, the backup complete or absent.

A child process backs up (or restores) a real tenant store and kills itself at one
exact step (``workers.backup_files._step``, as the move crash tests do). Afterwards
the tenant is opened again as a worker would open it: every collection is either its
old self, byte for byte, or (once the swap began) the restored copy; the backup is
either listed and intact or not listed at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.backup_files import backup_owned
from workers.backup_store import LocalBackupStore, verify_backup
from workers.collection_spec import parse_collection_spec
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT = "crashy"
DIM = 8

CHILD = r"""
import os, signal, sys
from pathlib import Path
import workers.backup_files as bf
from workers.backup_store import LocalBackupStore
from workers.tenant_store import TenantStore

hot, backups, action, backup_id, step, nth = sys.argv[1:7]
seen = []

def crash_at(name):
    if name == step:
        seen.append(1)
        if len(seen) >= int(nth):
            os.kill(os.getpid(), signal.SIGKILL)

bf._step = crash_at
store = TenantStore.open(Path(hot), "crashy", 1 << 30)
header = {"backup_id": backup_id, "head": {"seq": 1, "hash": "h"}}
if action == "backup":
    bf.backup_owned(store, LocalBackupStore(Path(backups)), header)
else:
    bf.restore_owned(store, LocalBackupStore(Path(backups)), {**header, "replace": True})
store.close()
print("finished", flush=True)
"""


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                path = Path(directory) / name
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _seed(hot: Path, rounds: int, start: int = 0) -> None:
    store = TenantStore.open(hot, TENANT, 1 << 30)
    for name, index in (("flat", "flat"), ("graph", "hnsw")):
        if name not in store.collection_names():
            spec = {"collection": name, "dimension": DIM, "metric": "l2", "index": index}
            store.create_collection(parse_collection_spec(spec))
        for r in range(start, start + rounds):
            rng = np.random.default_rng(r)
            ids = [f"v{r}-{i}" for i in range(50)]
            store.collection(name).upsert(ids, [{"r": r}] * 50, rng.random((50, DIM), np.float32))
    # The graph is saved whole now, so no background save changes a file during the test.
    store.collection("graph").flush_index()
    store.close()


def _run_child(hot: Path, backups: Path, action: str, backup_id: str, step: str, nth: int) -> str:
    args = [str(hot), str(backups), action, backup_id, step, str(nth)]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    return proc.stdout + proc.stderr


def _counts(hot: Path) -> dict[str, int]:
    store = TenantStore.open(hot, TENANT, 1 << 30)
    try:
        return store.vector_counts()
    finally:
        store.close()


# step, nth pass, complete afterwards?
BACKUP_CRASHES = [
    ("cut", 1, False),
    ("copied_file", 3, False),
    ("before_commit", 1, False),
    ("committed", 1, True),
]


@pytest.mark.parametrize(("step", "nth", "complete"), BACKUP_CRASHES)
def test_sigkill_during_a_backup(tmp_path: Path, step: str, nth: int, complete: bool) -> None:
    hot, backups = tmp_path / "hot", tmp_path / "backups"
    _seed(hot, 4)
    live = _tree(hot / TENANT)
    out = _run_child(hot, backups, "backup", "b-crash", step, nth)
    assert "finished" not in out, out
    assert _tree(hot / TENANT) == live, "the live data changed"
    store = LocalBackupStore(backups)
    listed = [m["backup_id"] for m in store.manifests(TENANT)]
    if complete:
        assert listed == ["b-crash"]
        assert verify_backup(store, TENANT, store.manifest(TENANT, "b-crash")) > 0
    else:
        assert listed == [], "an incomplete backup is listed"
    assert _counts(hot) == {"flat": 200, "graph": 200}
    assert not list((hot / TENANT).glob(".backup-*")), "the staging links were not cleared"


# step, nth pass, restored afterwards?
RESTORE_CRASHES = [
    ("staged", 1, False),
    ("staged", 2, False),
    ("verified", 1, False),
    ("mid_swap", 1, True),
]


@pytest.mark.parametrize(("step", "nth", "restored"), RESTORE_CRASHES)
def test_sigkill_during_a_restore(tmp_path: Path, step: str, nth: int, restored: bool) -> None:
    hot, backups = tmp_path / "hot", tmp_path / "backups"
    _seed(hot, 2)
    store = TenantStore.open(hot, TENANT, 1 << 30)
    backup_owned(store, LocalBackupStore(backups), {"backup_id": "b-base", "head": {}})
    store.close()
    backed_up = _tree(hot / TENANT)
    _seed(hot, 2, start=2)  # live data moves on after the backup
    live = _tree(hot / TENANT)
    out = _run_child(hot, backups, "restore", "b-base", step, nth)
    assert "finished" not in out, out
    counts = _counts(hot)  # opening the tenant finishes or drops the interrupted swap
    after = _tree(hot / TENANT)
    for name in ("flat", "graph"):
        mine = {k: v for k, v in after.items() if k.startswith(f"{name}/")}
        old = {k: v for k, v in live.items() if k.startswith(f"{name}/")}
        new = {k: v for k, v in backed_up.items() if k.startswith(f"{name}/")}
        assert mine in (old, new), f"{name} is neither the live nor the restored copy"
        if not restored:
            assert mine == old, f"{name}: live data changed before the swap"
            assert counts[name] == 200
    if restored:
        assert counts["flat"] == 100, "the interrupted swap was not finished"
        assert counts["graph"] == 200, "a collection whose swap never began changed"
    assert not [p for p in (hot / TENANT).iterdir() if p.name.startswith(".restore-")]


def test_backup_verify_is_the_restore_drill(tmp_path: Path) -> None:
    """``vectorpanda backup verify`` restores each newest backup; a flipped byte fails it."""
    data = tmp_path / "vp-data"
    hot, backups = data / "hot", data / "backups"
    _seed(hot, 2)
    store = TenantStore.open(hot, TENANT, 1 << 30)
    backup_owned(store, LocalBackupStore(backups), {"backup_id": "b-old", "head": {}})
    backup_owned(store, LocalBackupStore(backups), {"backup_id": "b-new", "head": {}})
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VP_")}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "vectorpanda", "backup", "verify", "--data-dir", str(data)]
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["clients"] == 1 and report["vectors"] == 200
    victim = next((backups / TENANT / "b-new").rglob("vectors.npy"))
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert bad.returncode == 1
    failed = json.loads(bad.stdout)
    assert not failed["ok"] and "b-new" in failed["failures"][0]
    assert not list(backups.glob(".drill-*")), "the scratch directory was left behind"
