"""A full hot store: 507 insufficient_storage (never 500), reads go on, writes come back."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

DIM = 64
TMPFS_BYTES = 4 * 1024 * 1024
FLOOR_BYTES = 128 * 1024


def packed(data: np.ndarray) -> str:
    return base64.b64encode(data.astype("<f4").tobytes()).decode()


@pytest.fixture
def small_hot_dir(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of TMPFS_BYTES mounted for this test, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs these tests as root)")
    hot = tmp_path / "hot"
    hot.mkdir(mode=0o700)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(hot)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield hot
    finally:
        subprocess.run(["umount", "-l", str(hot)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_free: int) -> Path:
    """A filler file taking all but ``leave_free`` bytes (something else filled the disk)."""
    filler = path / "filler.bin"
    chunk = b"\0" * 65536
    with filler.open("wb") as fh:
        while free_bytes(path) - len(chunk) > leave_free:
            fh.write(chunk)
            fh.flush()
    return filler


class Tenant:
    """One client's API calls, remembering every acknowledged vector and every status."""

    def __init__(self, stack: Stack, key: str) -> None:
        self.client = stack.client(key)
        self.rng = np.random.default_rng(7)
        self.acked: dict[str, np.ndarray] = {}
        self.statuses: list[int] = []
        self.batch = 0

    def post(self, path: str, body: dict[str, object]) -> httpx.Response:
        r = self.client.post(path, json=body)
        self.statuses.append(r.status_code)
        return r

    def upsert(self, collection: str, n: int) -> httpx.Response:
        data = self.rng.standard_normal((n, DIM)).astype(np.float32)
        ids = [f"{collection}-{self.batch}-{i}" for i in range(n)]
        self.batch += 1
        body = {"ids": ids, "values_b64": packed(data)}
        r = self.post(f"/v1/collections/{collection}/upsert", body)
        if r.status_code == 200 and collection == "c":
            self.acked.update(zip(ids, data, strict=True))
        return r


def assert_refused_for_space(r: httpx.Response) -> None:
    assert r.status_code == 507, r.text
    error = r.json()["error"]
    assert error["code"] == "insufficient_storage"
    assert "space" in error["message"] and "delet" in error["message"].lower()


def readyz(stack: Stack) -> httpx.Response:
    return httpx.get(f"{stack.url}/readyz", timeout=10)


def wait_for_readyz(stack: Stack, ready: bool) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        r = readyz(stack)
        body: dict[str, object] = r.json()
        if body["ready"] is ready or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_full_hot_store_refuses_writes_with_507_and_recovers(
    small_hot_dir: Path, tmp_path: Path
) -> None:
    hot = small_hot_dir
    with running_stack(
        tmp_path / "data", workers=1, VP_HOT_DIR=str(hot), VP_MIN_FREE_BYTES=str(FLOOR_BYTES)
    ) as stack:
        t = Tenant(stack, stack.new_client("diskfull", tier="premium"))
        for name in ("c", "scratch"):
            r = t.post("/v1/collections", {"name": name, "dimension": DIM, "index": "flat"})
            assert r.status_code == 201, r.text
        assert t.upsert("c", 200).status_code == 200

        # 1. A write larger than the space left passes the floor check and hits ENOSPC:
        #    the same 507, and the write left nothing behind.
        filler = fill(hot, FLOOR_BYTES + 32 * 1024)
        assert_refused_for_space(t.upsert("c", 1000))  # 256 KiB of vectors: more than is free
        assert t.upsert("c", 20).status_code == 200  # still above the floor
        filler.unlink()

        # 2. Writes fill the disk down to the floor: then 507 before it is full.
        for _ in range(200):
            r = t.upsert("scratch", 200)
            if r.status_code != 200:
                break
        assert_refused_for_space(r)
        assert free_bytes(hot) > 0
        assert_refused_for_space(t.upsert("c", 1))
        r = t.post("/v1/collections", {"name": "more", "dimension": DIM})
        assert_refused_for_space(r)
        body = wait_for_readyz(stack, ready=False)
        assert body["ready"] is False, body
        assert {"worker": "w1", "store": "hot"}.items() <= body["short_of_space"][0].items()  # type: ignore[index]
        metrics = httpx.get(f"{stack.url}/metrics").text
        assert 'vectorpanda_worker_free_bytes{store="hot",worker="w1"}' in metrics

        # 3. Reads and deletes keep working while short of space.
        some = list(t.acked)[:5]
        r = t.post("/v1/collections/c/fetch", {"ids": some})
        assert r.status_code == 200 and set(r.json()["vectors"]) == set(some)
        r = t.post("/v1/collections/c/query", {"vector": [0.1] * DIM, "top_k": 3})
        assert r.status_code == 200 and len(r.json()["matches"]) == 3
        r = t.post("/v1/collections/c/delete", {"ids": some[:2]})
        assert r.status_code == 200 and r.json()["deleted"] == 2
        for vid in some[:2]:
            del t.acked[vid]

        # 4. Space freed (the scratch collection deleted): writes work again, no restart.
        r = t.client.delete("/v1/collections/scratch")
        assert r.status_code == 204, r.text
        assert t.upsert("c", 100).status_code == 200
        assert t.post("/v1/collections", {"name": "more", "dimension": DIM}).status_code == 201
        assert wait_for_readyz(stack, ready=True)["ready"] is True

        assert 500 not in t.statuses and set(t.statuses) <= {200, 201, 507}, t.statuses
        assert_all_acknowledged_present(t, gone=some[:2])

        # operations were emailed once, for the one crossing
        alerts = storage_alerts(tmp_path / "data" / "mail")
        assert len(alerts) == 1, alerts
        assert "ops@localhost" in str(alerts[0]["To"])
        leftovers = [p for p in hot.rglob("*") if p.name.endswith(".tmp") or ".trash-" in p.name]
        assert leftovers == []
        assert not any("Traceback" in line for line in stack.output), "".join(stack.output)

    # After a restart the log replays cleanly: the failed write left no torn record.
    with running_stack(
        tmp_path / "data", workers=1, VP_HOT_DIR=str(hot), VP_MIN_FREE_BYTES=str(FLOOR_BYTES)
    ) as again:
        t.client = again.client(t.client.headers["Authorization"].removeprefix("Bearer "))
        assert_all_acknowledged_present(t, gone=some[:2])


def storage_alerts(mail: Path, timeout: float = 10.0) -> list[EmailMessage]:
    """The operations emails about a store short of space (waiting for the first)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m
            for m in (
                message_from_bytes(p.read_bytes(), policy=default) for p in mail.glob("*.eml")
            )
            if "short of space" in str(m["Subject"])
        ]
        if found or time.monotonic() > deadline:
            return found  # type: ignore[return-value]
        time.sleep(0.2)


def assert_all_acknowledged_present(t: Tenant, gone: list[str]) -> None:
    ids = list(t.acked)
    for i in range(0, len(ids), 1000):
        r = t.client.post("/v1/collections/c/fetch", json={"ids": ids[i : i + 1000]})
        assert r.status_code == 200, r.text
        got = r.json()["vectors"]
        assert set(got) == set(ids[i : i + 1000])
        for vid in ids[i : i + 1000]:
            assert np.array_equal(np.asarray(got[vid]["values"], np.float32), t.acked[vid])
    r = t.client.post("/v1/collections/c/fetch", json={"ids": gone})
    assert r.status_code == 200 and r.json()["vectors"] == {}
