"""SIGKILL at each step of re-encryption (upgrade of plaintext data, key rotation): no data lost.

A child process opens a tenant and re-seals it (``TenantStore.reseal_all``) with
``VP_TEST_CRASH_AT`` naming one step; it dies there with SIGKILL. Afterwards the tenant
opens with the keys it had (plaintext + new key for the upgrade, old + new for a
rotation) and every row reads back exactly; running the re-seal again finishes it, and
then the new key alone opens everything and no plaintext is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workers.collection_spec import parse_collection_spec
from workers.crash_points import CRASH_ENV
from workers.maintenance import Maintenance
from workers.sealed import Keyring
from workers.segment import read_manifest
from workers.tenant_store import TenantStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TENANT = "reseal_tenant"
DIM = 8
N = 50
WORD = b"heliotrope-99"

CHILD = r"""
import sys
from pathlib import Path
from workers.sealed import Keyring
from workers.tenant_store import TenantStore

hot, wire = Path(sys.argv[1]), sys.argv[2]
current, keys = int(wire.split(":")[0]), {}
for part in wire.split(":")[1].split(","):
    version, key = part.split("=")
    keys[int(version)] = bytes.fromhex(key)
store = TenantStore.open(hot, "reseal_tenant", 1 << 30, keyring=Keyring(current, keys))
store.reseal_all()
store.close()
print("finished", flush=True)
"""

STEPS = ["reseal-start", "reseal-index-saved", "compact-segment-written", "reseal-done"]


def _wire(ring: Keyring) -> str:
    return f"{ring.current}:" + ",".join(f"{v}={k.hex()}" for v, k in ring.keys.items())


def _vectors(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, DIM)).astype(np.float32)


def _fill(hot: Path, ring: Keyring | None) -> dict[str, np.ndarray]:
    store = TenantStore.open(hot, TENANT, 1 << 30, keyring=ring, maintenance=Maintenance())
    data = {}
    for name, index, seed in (("graph", "hnsw", 1), ("flat", "flat", 2)):
        spec = {"collection": name, "dimension": DIM, "metric": "l2", "index": index}
        store.create_collection(parse_collection_spec(spec))
        coll = store.collection(name)
        data[name] = _vectors(seed)
        half = N // 2
        meta = [{"w": WORD.decode()} for _ in range(N)]
        coll.upsert([f"v{i}" for i in range(half)], meta[:half], data[name][:half])
        coll.compact()  # half in a segment, half in the log
        coll.upsert([f"v{i}" for i in range(half, N)], meta[half:], data[name][half:])
        if index == "hnsw":
            coll.flush_index()
    store.close()
    return data


def _check(hot: Path, ring: Keyring, data: dict[str, np.ndarray]) -> None:
    store = TenantStore.open(hot, TENANT, 1 << 30, keyring=None, maintenance=Maintenance())
    store.close()  # a keyless open must not change anything (no re-seal without keys)
    store = TenantStore.open(hot, TENANT, 1 << 30, keyring=ring, maintenance=Maintenance())
    try:
        for name, vectors in data.items():
            ids, meta, values = store.collection(name).fetch([f"v{i}" for i in range(N)])
            assert ids == [f"v{i}" for i in range(N)]
            assert np.array_equal(values, vectors), name
            assert meta[0] == {"w": WORD.decode()}
    finally:
        store.close()


def _run_child(hot: Path, ring: Keyring, crash: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if crash is not None:
        env[CRASH_ENV] = crash
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(hot), _wire(ring)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _no_plaintext(hot: Path) -> None:
    for path in hot.rglob("*"):
        if path.is_file():
            assert WORD not in path.read_bytes(), path


@pytest.mark.parametrize("kind", ["upgrade", "rotation"])
@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_of_a_reseal_loses_nothing(
    tmp_path: Path, kind: str, step: str
) -> None:
    hot = tmp_path / "hot"
    old = Keyring(1, {1: os.urandom(32)})
    data = _fill(hot, None if kind == "upgrade" else old)
    new_key = os.urandom(32)
    ring = (
        Keyring(1, {1: new_key}) if kind == "upgrade" else Keyring(2, {1: old.keys[1], 2: new_key})
    )

    died = _run_child(hot, ring, step)
    assert died.returncode == -signal.SIGKILL, died.stderr
    _check(hot, ring, data)  # readable right after the crash (loading may finish the job)

    done = _run_child(hot, ring, None)
    assert done.returncode == 0 and "finished" in done.stdout, done.stderr
    only_new = Keyring(ring.current, {ring.current: new_key})
    _check(hot, only_new, data)
    for name in data:
        assert read_manifest(hot / TENANT / name).key_version == ring.current
    _no_plaintext(hot)
