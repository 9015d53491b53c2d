"""A damaged segment, spec or manifest is refused (never served), logged, and left untouched."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import orjson
import pytest

import workers.tenant_store as tenant_store_module
from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.integrity import FileChecksum, file_checksum
from workers.protocol import ErrorCode
from workers.segment import MANIFEST, WRITE_BLOCK_ROWS, read_manifest, write_npy
from workers.tenant_store import TenantStore

from .conftest import SMALL_WAL

DIM = 8


def _spec(name: str, index: str = "flat"):
    doc = {"collection": name, "dimension": DIM, "metric": "l2", "index": index}
    return parse_collection_spec(doc)


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM), np.float32)


def _compacted(store: TenantStore, name: str, n: int = 20, seed: int = 1) -> np.ndarray:
    """A collection with ``n`` vectors folded into a segment (generation 1)."""
    store.create_collection(_spec(name))
    coll = store.collection(name)
    vectors = _vectors(n, seed)
    coll.upsert([f"v{i}" for i in range(n)], [{"i": i} for i in range(n)], vectors)
    coll.compact()
    return vectors


def _reopen(hot: Path, store: TenantStore) -> TenantStore:
    store.close()
    return TenantStore.open(hot, "tenant_a", SMALL_WAL)


def _flip(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _integrity_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "integrity check failed" in r.getMessage()]


def test_manifest_records_a_checksum_of_every_file(store: TenantStore) -> None:
    _compacted(store, "docs")
    directory = store.directory / "docs"
    manifest = read_manifest(directory)
    assert manifest.checksums is not None and manifest.rows == 20
    assert sorted(manifest.checksums) == [
        "collection.json",
        "seg-1/ids.json",
        "seg-1/metadata.jsonl",
        "seg-1/vectors.npy",
    ]
    for name, checksum in manifest.checksums.items():
        assert file_checksum(directory / name) == checksum


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("seg-1/vectors.npy", "flip"),  # still a valid .npy: would be served as garbage
        ("seg-1/vectors.npy", "truncate"),
        ("seg-1/ids.json", "flip"),
        ("seg-1/metadata.jsonl", "flip"),
        ("collection.json", "flip"),
        ("manifest.json", "flip"),
    ],
)
def test_damaged_file_is_refused_logged_once_and_left_untouched(
    hot: Path, store: TenantStore, caplog: pytest.LogCaptureFixture, file: str, damage: str
) -> None:
    _compacted(store, "docs")
    store = _reopen(hot, store)
    path = store.directory / "docs" / file
    if damage == "flip":
        _flip(path, offset=len(path.read_bytes()) // 2 if file == MANIFEST else -1)
    else:
        path.write_bytes(path.read_bytes()[:-5])
    before = _snapshot(store.directory / "docs")
    caplog.set_level(logging.INFO, logger="workers")
    try:
        for _ in range(3):
            with pytest.raises(StoreError) as err:
                store.collection("docs")
            assert err.value.code == ErrorCode.UNAVAILABLE
            assert err.value.message == (
                f"collection 'docs' failed an integrity check ({file}); its data is kept "
                "untouched for the operators; contact support"
            )
            assert str(hot) not in err.value.message and "tenant_a" not in err.value.message
        # One line for the one load attempt; the requests after it get the cached refusal.
        lines = _integrity_lines(caplog)
        assert len(lines) == 1
        assert "tenant tenant_a collection docs" in lines[0] and file in lines[0]
        assert _snapshot(store.directory / "docs") == before
    finally:
        store.close()


def test_damage_is_confined_to_its_collection(
    hot: Path, store: TenantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compacted(store, "docs")
    other = _compacted(store, "other", n=5, seed=2)
    neighbour = TenantStore.open(hot, "tenant_b", SMALL_WAL)
    theirs = _compacted(neighbour, "docs", n=7, seed=3)
    store = _reopen(hot, store)
    _flip(store.directory / "docs" / "seg-1" / "vectors.npy")
    try:
        with pytest.raises(StoreError):
            store.collection("docs").fetch(["v0"])
        found, _, values = store.collection("other").fetch(["v0", "v4"])
        assert found == ["v0", "v4"] and values.tobytes() == other[[0, 4]].tobytes()
        # Listing, usage and quota checks of the tenant keep working around it.
        names = [c["name"] for c in store.list_collections()]
        assert names == ["docs", "other"]
        assert store.vector_counts() == {"docs": 20, "other": 5}
        assert store.usage()["vectors"] == 25
        new = _vectors(1, 9)
        assert store.upsert("other", ["w"], [None], new, max_vectors=1000) == 1
        found, _, values = neighbour.collection("docs").fetch(["v6"])
        assert values.tobytes() == theirs[[6]].tobytes()
        # The refusal is retried later, so a file restored by the operators is served again.
        monkeypatch.setattr(tenant_store_module, "INTEGRITY_RETRY_S", 0.0)
        _flip(store.directory / "docs" / "seg-1" / "vectors.npy")
        store.unload()
        assert store.collection("docs").fetch(["v0"])[0] == ["v0"]
    finally:
        store.close()
        neighbour.close()


def test_damaged_collection_can_still_be_deleted_and_recreated(
    hot: Path, store: TenantStore
) -> None:
    _compacted(store, "docs")
    store = _reopen(hot, store)
    _flip(store.directory / "docs" / "seg-1" / "vectors.npy")
    try:
        with pytest.raises(StoreError):
            store.collection("docs")
        store.delete_collection("docs")
        store.create_collection(_spec("docs"))
        assert store.collection("docs").vector_count == 0
    finally:
        store.close()


def test_collection_without_checksums_loads_unverified_until_compaction(
    hot: Path, store: TenantStore, caplog: pytest.LogCaptureFixture
) -> None:
    vectors = _compacted(store, "legacy")
    directory = store.directory / "legacy"
    store.close()
    # Rewrite the manifest as versions before integrity checks wrote it.
    doc = orjson.loads((directory / MANIFEST).read_bytes())
    legacy = {k: doc[k] for k in ("generation", "segment", "wal")}
    (directory / MANIFEST).write_bytes(orjson.dumps(legacy))
    caplog.set_level(logging.INFO, logger="workers")
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    try:
        coll = store.collection("legacy")
        assert coll.fetch(["v3"])[2].tobytes() == vectors[[3]].tobytes()
        store.unload()
        store.collection("legacy")
        unverified = [r for r in caplog.records if "no segment checksums" in r.getMessage()]
        assert len(unverified) == 1
        store.collection("legacy").compact()
        manifest = read_manifest(directory)
        assert manifest.checksums is not None and manifest.generation == 2
        spec_sum = FileChecksum.of_bytes((directory / "collection.json").read_bytes())
        assert manifest.checksums["collection.json"] == spec_sum
    finally:
        store.close()
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    try:
        assert store.collection("legacy").fetch(["v3"])[2].tobytes() == vectors[[3]].tobytes()
    finally:
        store.close()


@pytest.mark.parametrize(
    "rows", [0, 1, WRITE_BLOCK_ROWS - 1, WRITE_BLOCK_ROWS, 2 * WRITE_BLOCK_ROWS + 3]
)
def test_vectors_file_is_what_numpy_saves(rows: int) -> None:
    """The segment's vectors.npy, written block by block, is np.save's file byte for
    byte (so np.load, and a reader of any other version, reads it), a column slice too."""
    wide = np.random.default_rng(rows).standard_normal((rows, DIM + 3), np.float32)
    for matrix in (wide[:, :DIM], np.ascontiguousarray(wide[:, :DIM])):
        written, saved = io.BytesIO(), io.BytesIO()
        write_npy(written, matrix)
        np.save(saved, np.ascontiguousarray(matrix), allow_pickle=False)
        assert written.getvalue() == saved.getvalue()
        written.seek(0)
        assert np.array_equal(np.load(written), matrix)
