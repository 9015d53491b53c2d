"""Encryption at rest through a real ``vectorpanda up``: no plaintext on disk, crypto-shredding.

One data directory, two stacks in turn. Clients A and B write known vectors and
metadata (into segments, logs and HNSW graphs); B is paused (its files go cold). Then
every file under the data directory is scanned for those vectors' bytes and metadata
strings: none is found (nor, later, in a backup of B, which the restore drill reads).
Then tampering: a flipped byte in A's graph file and in a log record (not the tail)
makes that collection answer 503 with an integrity message while A's other
collection and client B answer as before. Last, A is deleted: the receipt
lists its files with the SHA-256 of their ciphertext, and a copy of those files kept
from before (a backup, a disk image) decrypts under no data key that still exists.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from coordinator.key_wrapping import LocalKeyWrapper
from tests.stack import Stack, read_env_file, running_stack
from workers.integrity import IntegrityError
from workers.sealed import Keyring, is_sealed, open_bytes

pytestmark = pytest.mark.integration

DIM = 16
N = 60
WORD = "pelican-marmalade-4471"


def _new_client(stack: Stack, name: str) -> tuple[str, str]:
    with stack.admin() as admin:
        r = admin.post(
            "/admin/v1/clients",
            json={"name": name, "email": f"{name}@example.com", "tier": "premium"},
        )
        r.raise_for_status()
        client_id = str(r.json()["client_id"])
        r = admin.post(
            f"/admin/v1/clients/{client_id}/keys", json={"scopes": ["read", "write", "manage"]}
        )
        r.raise_for_status()
        return client_id, str(r.json()["api_key"])


def _create(c: httpx.Client, name: str, index: str) -> None:
    spec: dict[str, Any] = {"name": name, "dimension": DIM, "metric": "l2", "index": index}
    r = c.post("/v1/collections", json=spec)
    assert r.status_code == 201, r.text


def _upsert(c: httpx.Client, name: str, prefix: str, data: np.ndarray) -> None:
    ids = [f"{prefix}{i}" for i in range(len(data))]
    meta = [{"note": f"{WORD}-{prefix}{i}"} for i in range(len(data))]
    packed = base64.b64encode(data.astype("<f4").tobytes()).decode()
    body = {"ids": ids, "values_b64": packed, "metadata": meta}
    r = c.post(f"/v1/collections/{name}/upsert", json=body)
    assert r.status_code == 200, r.text


def _fetch(c: httpx.Client, name: str, vector_id: str) -> tuple[bytes, Any]:
    r = c.post(f"/v1/collections/{name}/fetch", json={"ids": [vector_id]})
    assert r.status_code == 200, r.text
    found = r.json()["vectors"][vector_id]
    return np.asarray(found["values"], np.float32).tobytes(), found.get("metadata")


def _wait(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _backup_done(admin: httpx.Client, client_id: str) -> bool:
    backups = admin.get(f"/admin/v1/clients/{client_id}/backups").json()["backups"]
    return bool(backups) and backups[0]["status"] == "complete"


def _generation(directory: Path) -> int:
    try:
        doc = orjson.loads((directory / "manifest.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return 0
    return int(doc["generation"]) if doc.get("rows") == N else 0


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _assert_no_plaintext(root: Path, matrices: list[np.ndarray]) -> int:
    needles = [WORD.encode()]
    for matrix in matrices:
        needles += [row[:3].tobytes() for row in matrix]  # 12 bytes of each vector
    scanned = 0
    for path in _files(root):
        data = path.read_bytes()
        scanned += 1
        for needle in needles:
            assert needle not in data, f"plaintext found in {path.relative_to(root)}"
    return scanned


def _data_keys(data_dir: Path) -> list[bytes]:
    """Every data key that still exists, unwrapped with the master key from the env file."""
    master = read_env_file(data_dir / "vectorpanda.env")["VP_MASTER_KEY"]
    wrapper = LocalKeyWrapper([master])
    with sqlite3.connect(data_dir / "control.sqlite3") as db:
        rows = db.execute("SELECT wrapped, wrapper_key_id FROM client_data_keys").fetchall()
    return [wrapper.unwrap(bytes.fromhex(w), k) for w, k in rows]


def _verify_receipt(data_dir: Path, receipt: Path, *extra: str) -> Any:
    command = [sys.executable, "-m", "vectorpanda", "audit", "verify-receipt", str(receipt)]
    command += ["--data-dir", str(data_dir), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x20
    path.write_bytes(bytes(raw))


def test_no_plaintext_at_rest_tampering_refused_and_deletion_shreds(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = {k: rng.standard_normal((N, DIM)).astype(np.float32) for k in ("ag", "af", "b")}
    late = rng.standard_normal((2, DIM)).astype(np.float32)
    hot, cold = tmp_path / "hot", tmp_path / "cold"

    with running_stack(tmp_path, VP_WAL_COMPACT_BYTES="4096") as stack:
        a_id, a_key = _new_client(stack, "alpha")
        b_id, b_key = _new_client(stack, "beta")
        with stack.client(a_key) as a, stack.client(b_key) as b:
            _create(a, "graph", "hnsw")
            _create(a, "flat", "flat")
            _create(b, "docs", "hnsw")
            _upsert(a, "graph", "g", data["ag"])  # overflows the 4 KiB log: compacted
            _upsert(a, "flat", "f", data["af"])
            _upsert(b, "docs", "d", data["b"])
            _wait(lambda: (hot / a_id / "graph" / "hnsw.index").is_file(), "A's graph file")
            _wait(lambda: _generation(hot / a_id / "flat") >= 1, "A's flat compaction")
            # Two small writes after compaction: they stay in A's flat log, in order.
            _upsert(a, "flat", "late", late[:1])
            _upsert(a, "flat", "later", late[1:])
            assert _fetch(a, "flat", "f7") == (data["af"][7].tobytes(), {"note": f"{WORD}-f7"})
        with stack.admin() as admin:
            r = admin.post(f"/admin/v1/clients/{b_id}/pause", json={"reason": "cold tier"})
            assert r.status_code == 200, r.text
    assert (cold / b_id / "docs").is_dir() and not (hot / b_id).exists()

    # --- nothing in plaintext, anywhere under the data directory -------------------------
    scanned = _assert_no_plaintext(tmp_path, [data["ag"], data["af"], data["b"], late])
    assert scanned > 10
    graph = hot / a_id / "graph"
    flat = hot / a_id / "flat"
    manifest = orjson.loads((graph / "manifest.json").read_bytes())
    assert manifest["key_version"] == 1
    for path in [graph / "hnsw.index", *graph.glob("seg-*/*"), *cold.rglob("seg-*/*")]:
        assert is_sealed(path.read_bytes()[:8]), path
    assert sorted(flat.glob("wal-*.log"))[-1].read_bytes().startswith(b"VPWAL1")

    # --- tampering: that collection is refused, the others answer ------------------------
    backup = tmp_path.parent / f"{tmp_path.name}-backup"
    shutil.copytree(hot / a_id, backup)  # an untouched copy, like a backup or disk image
    _flip(graph / "hnsw.index", 200)
    wal = sorted(flat.glob("wal-*.log"), key=lambda p: int(p.stem.split("-")[1]))[-1]
    _flip(wal, 28 + 40)  # inside the first record of the log: damage, not a torn tail

    with running_stack(tmp_path, VP_WAL_COMPACT_BYTES="4096") as stack:
        with stack.client(a_key) as a:
            for name, file in (("graph", "hnsw.index"), ("flat", wal.name)):
                r = a.post(f"/v1/collections/{name}/query", json={"vector": [0.0] * DIM})
                assert r.status_code == 503, r.text
                message = r.json()["error"]["message"]
                assert "integrity check" in message and file in message, message
        with stack.admin() as admin:
            r = admin.post(f"/admin/v1/clients/{b_id}/resume", json={"reason": "back"})
            assert r.status_code == 200, r.text
        with stack.client(b_key) as b:
            assert _fetch(b, "docs", "d3") == (data["b"][3].tobytes(), {"note": f"{WORD}-d3"})
        # A backup copies the files byte for byte (so it is encrypted too); the restore
        # drill reads it with B's data key.
        with stack.admin() as admin:
            r = admin.post(f"/admin/v1/clients/{b_id}/backups", json={})
            assert r.status_code == 202, r.text
            _wait(lambda: _backup_done(admin, b_id), "B's backup")
            drill = admin.post("/admin/v1/backups/drill", json={})
            assert drill.status_code == 200, drill.text
            assert drill.json()["failures"] == [] and drill.json()["vectors"] >= N
        _assert_no_plaintext(tmp_path / "backups", [data["b"]])

        # --- crypto-shredding: delete A; its copies open under no remaining key ----------
        before = {
            f"hot/{a_id}/{p.relative_to(hot / a_id)}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in _files(hot / a_id)
            if p.name != ".lock"
        }
        with stack.admin() as admin:
            r = admin.delete(f"/admin/v1/clients/{a_id}", params={"reason": "shred test"})
            assert r.status_code == 204, r.text
            r = admin.get(f"/admin/v1/clients/{a_id}/deletion-receipt")
            assert r.status_code == 200, r.text
            receipt = r.json()
            events = admin.get(
                "/admin/v1/events", params={"type": "client.deleted", "client_id": a_id}
            ).json()["events"]
            assert admin.get(f"/admin/v1/clients/{b_id}/deletion-receipt").status_code == 404
    assert {f["path"]: f["sha256"] for f in receipt["files"]} == before
    assert receipt["data_key_id"] and receipt["client_id"] == a_id
    assert receipt["event_seq"] == events[0]["seq"] and receipt["event_hash"] == events[0]["hash"]
    assert not (hot / a_id).exists() or [p.name for p in _files(hot / a_id)] == [".lock"]

    # The receipt checks out against the log, the control database and a kept copy.
    saved = tmp_path.parent / f"{tmp_path.name}-receipt.json"
    saved.write_text(orjson.dumps(receipt).decode())
    kept = next((backup / "graph").glob("seg-*/ids.json"))
    verdict = _verify_receipt(tmp_path, saved, "--check-files", "--copy", str(kept))
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert orjson.loads(verdict.stdout)["ok"] is True
    forged = {**receipt, "files": [{**receipt["files"][0], "sha256": "0" * 64}]}
    saved.write_text(orjson.dumps(forged).decode())
    verdict = _verify_receipt(tmp_path, saved)
    assert verdict.returncode == 1
    assert orjson.loads(verdict.stdout)["checks"]["receipt_matches_the_event"] is False
    saved.unlink()

    remaining = _data_keys(tmp_path)
    assert len(remaining) == 1  # B's
    sealed = [p for p in _files(backup) if is_sealed(p.read_bytes()[:8])]
    assert sealed
    for path in sealed:
        for key in remaining:
            with pytest.raises(IntegrityError):
                open_bytes(path.read_bytes(), Keyring(1, {1: key}), path.name, False)
    shutil.rmtree(backup)
