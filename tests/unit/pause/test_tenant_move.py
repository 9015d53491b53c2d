"""The hot/cold mover: refuses an owned tenant, never switches to a copy that fails verify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import workers.tenant_move as tm
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.protocol import ErrorCode
from workers.tenant_store import LOCK_FILE, TenantStore

TENANT = "tmove"


def _tenant(hot: Path) -> TenantStore:
    store = TenantStore.open(hot, TENANT, 1 << 30)
    spec = {"collection": "c", "dimension": 2, "metric": "l2", "index": "flat"}
    store.create_collection(parse_collection_spec(spec))
    store.collection("c").upsert(["a", "b"], [None, None], np.ones((2, 2), dtype=np.float32))
    return store


def test_lock_file_name_matches_the_tenant_store() -> None:
    assert tm.LOCK_FILE == LOCK_FILE


def test_a_tenant_still_owned_by_a_worker_is_not_moved(tmp_path: Path) -> None:
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    store = _tenant(hot)
    tm_lock = tm._tenant_lock(hot, TENANT)
    with pytest.raises(StoreError) as err, tm_lock:
        pass
    assert err.value.code == ErrorCode.UNAVAILABLE
    store.close()
    assert tm.move_tenant(hot, cold, TENANT, tm.COLD)["location"] == tm.COLD


def test_a_copy_that_fails_verification_is_never_switched_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    _tenant(hot).close()
    before = tm.tree_checksums(hot / TENANT)
    original = tm._copy_file

    def flip_a_byte(src: Path, dst: Path) -> None:
        original(src, dst)
        if dst.stat().st_size:
            data = bytearray(dst.read_bytes())
            data[0] ^= 0xFF
            dst.write_bytes(bytes(data))

    monkeypatch.setattr(tm, "_copy_file", flip_a_byte)
    with pytest.raises(StoreError):
        tm.move_tenant(hot, cold, TENANT, tm.COLD)
    assert tm.location(hot, TENANT) == tm.HOT
    assert tm.tree_checksums(hot / TENANT) == before
    assert not list(cold.iterdir()), "no partial or second copy is left behind"


def test_describe_a_cold_tenant_without_loading_it(tmp_path: Path) -> None:
    hot, cold = tmp_path / "hot", tmp_path / "cold"
    _tenant(hot).close()
    tm.move_tenant(hot, cold, TENANT, tm.COLD)
    info = tm.describe(hot, cold, TENANT)
    assert info["location"] == "cold" and info["vectors"] == 2
    assert [c["name"] for c in info["collections"]] == ["c"]
    assert tm.describe(hot, cold, "other")["location"] == "hot"
