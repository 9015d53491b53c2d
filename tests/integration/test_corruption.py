"""Torn and corrupted files through a real ``vectorpanda up``: only the damaged part is affected.

One stack, three tenants, one restart in between: tenant A's segment gets a flipped byte
(its collection answers 503 with a clear message and a log line; its other collection
answers as before), tenant B's write-ahead log loses its tail mid-record (only that
record is gone), tenant C's HNSW index file is damaged: the stack encrypts at rest, so
the graph file fails authentication and C's collection is refused like A's (an
unencrypted index would be rebuilt; see tests/unit/workers for that path).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 16
N = 100  # one upsert of this many rows overflows a 4 KiB log, so it is compacted


def _new_client(stack: Stack, name: str) -> tuple[str, str]:
    """A premium client (many requests, no rate limit trouble): its id and an API key."""
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


def _create(c: httpx.Client, name: str, index: str = "flat") -> None:
    spec: dict[str, Any] = {"name": name, "dimension": DIM, "metric": "l2", "index": index}
    r = c.post("/v1/collections", json=spec)
    assert r.status_code == 201, r.text


def _upsert(c: httpx.Client, name: str, ids: list[str], data: np.ndarray) -> None:
    packed = base64.b64encode(data.astype("<f4").tobytes()).decode()
    r = c.post(f"/v1/collections/{name}/upsert", json={"ids": ids, "values_b64": packed})
    assert r.status_code == 200, r.text


def _answers(c: httpx.Client, name: str, data: np.ndarray) -> list[list[str]]:
    r = c.post(
        f"/v1/collections/{name}/query",
        json={"vectors": data[:10].tolist(), "top_k": 5, "ef_search": 500},
    )
    assert r.status_code == 200, r.text
    return [[m["id"] for m in res["matches"]] for res in r.json()["results"]]


def _fetch(c: httpx.Client, name: str, ids: list[str]) -> dict[str, bytes]:
    r = c.post(f"/v1/collections/{name}/fetch", json={"ids": ids})
    assert r.status_code == 200, r.text
    vectors = r.json()["vectors"]
    return {i: np.asarray(v["values"], np.float32).tobytes() for i, v in vectors.items()}


def _wait_compacted(directory: Path, rows: int, timeout: float = 15.0) -> int:
    """Wait until the manifest names a segment holding ``rows`` rows; its generation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = orjson.loads((directory / "manifest.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            doc = {}
        if doc.get("rows") == rows and doc.get("generation", 0) >= 1:
            return int(doc["generation"])
        time.sleep(0.05)
    raise AssertionError(f"{directory.name} was not compacted in {timeout} s")


def _wait_for_line(stack: Stack, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [line for line in stack.output if text in line]
        if lines:
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r}:\n" + "".join(stack.output[-40:]))


def _wal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("wal-*.log"), key=lambda p: int(p.stem.split("-")[1]))


def test_damaged_files_affect_only_their_own_collection(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    data = {k: rng.standard_normal((N, DIM)).astype(np.float32) for k in "abcn"}
    ids = [f"v{i}" for i in range(N)]
    tail = rng.standard_normal((3, DIM)).astype(np.float32)
    hot = tmp_path / "hot"

    with running_stack(tmp_path, VP_WAL_COMPACT_BYTES="4096") as stack:
        a_id, a_key = _new_client(stack, "alpha")
        b_id, b_key = _new_client(stack, "beta")
        c_id, c_key = _new_client(stack, "gamma")
        with stack.client(a_key) as a, stack.client(b_key) as b, stack.client(c_key) as c:
            _create(a, "docs")
            _create(a, "notes")
            _create(b, "docs")
            _create(c, "graph", index="hnsw")
            _upsert(a, "docs", ids, data["a"])
            _upsert(a, "notes", ids, data["n"])
            _upsert(b, "docs", ids, data["b"])
            _upsert(c, "graph", ids, data["c"])
            a_gen = _wait_compacted(hot / a_id / "docs", N)
            _wait_compacted(hot / b_id / "docs", N)
            # Three small writes after the compaction: they sit in B's log, in order.
            for i in range(3):
                _upsert(b, "docs", [f"t{i}"], tail[i : i + 1])
            before = {
                "a_notes": _answers(a, "notes", data["n"]),
                "b_docs": _answers(b, "docs", data["b"]),
                "c_graph": _answers(c, "graph", data["c"]),
            }

    # --- damage the files while nothing runs ---------------------------------------------
    segment = hot / a_id / "docs" / f"seg-{a_gen}" / "vectors.npy"
    raw = bytearray(segment.read_bytes())
    raw[-3] ^= 0x40  # a float's exponent bit: still a valid .npy, wrong values
    segment.write_bytes(bytes(raw))
    damaged = segment.read_bytes()

    wal = _wal_files(hot / b_id / "docs")[-1]
    size = wal.stat().st_size
    assert size > 3 * DIM * 4  # the three tail records are in this log
    with wal.open("r+b") as fh:
        fh.truncate(size - 10)  # tears the last record (t2) in the middle

    index = hot / c_id / "graph" / "hnsw.index"
    raw = bytearray(index.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    index.write_bytes(bytes(raw))

    with (
        running_stack(tmp_path, VP_WAL_COMPACT_BYTES="4096") as stack,
        stack.client(a_key) as a,
        stack.client(b_key) as b,
        stack.client(c_key) as c,
    ):
        # A's damaged collection: refused with a clear message, never served.
        for request in (
            lambda: a.post("/v1/collections/docs/query", json={"vector": [0.0] * DIM}),
            lambda: a.post("/v1/collections/docs/fetch", json={"ids": ["v0"]}),
            lambda: a.get("/v1/collections/docs"),
        ):
            r = request()
            assert r.status_code == 503, r.text
            assert r.headers.get("Retry-After")
            error = r.json()["error"]
            assert error["code"] == "unavailable"
            assert error["message"] == (
                f"collection 'docs' failed an integrity check (seg-{a_gen}/vectors.npy); "
                "its data is kept untouched for the operators; contact support"
            )
        line = _wait_for_line(stack, "integrity check failed")
        assert f"tenant {a_id} collection docs file seg-{a_gen}/vectors.npy" in line
        assert sum("integrity check failed" in x for x in stack.output) == 1
        assert segment.read_bytes() == damaged  # kept for the operators

        # A's other collection and listing keep working.
        assert _answers(a, "notes", data["n"]) == before["a_notes"]
        assert _fetch(a, "notes", ["v5"]) == {"v5": data["n"][5].tobytes()}
        r = a.get("/v1/collections")
        assert r.status_code == 200, r.text
        listed = {c["name"]: c["vector_count"] for c in r.json()["collections"]}
        assert listed == {"docs": N, "notes": N}
        _upsert(a, "notes", ["new"], tail[:1])

        # B: everything before the tear, not the torn record.
        assert _answers(b, "docs", data["b"]) == before["b_docs"]
        got = _fetch(b, "docs", ["v0", "v99", "t0", "t1", "t2"])
        assert got == {
            "v0": data["b"][0].tobytes(),
            "v99": data["b"][99].tobytes(),
            "t0": tail[0].tobytes(),
            "t1": tail[1].tobytes(),
        }
        assert b.get("/v1/collections/docs").json()["vector_count"] == N + 2
        _wait_for_line(stack, "torn tail")

        # C: the sealed index fails authentication: refused too, its files kept as found.
        r = c.post("/v1/collections/graph/query", json={"vector": [0.0] * DIM})
        assert r.status_code == 503, r.text
        assert "integrity check (hnsw.index)" in r.json()["error"]["message"]
        assert index.read_bytes() == raw
