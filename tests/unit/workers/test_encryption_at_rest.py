"""A tenant with a data key writes nothing in plaintext; tampering and moved chunks are refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from workers.collection_spec import parse_collection_spec
from workers.errors import StoreError
from workers.integrity import IntegrityError
from workers.protocol import ErrorCode
from workers.sealed import (
    CHUNK_SIZE,
    HEADER_SIZE,
    Keyring,
    open_bytes,
    seal_bytes,
    sealed_chunks,
)
from workers.segment import read_manifest
from workers.tenant_store import TenantStore
from workers.wal import UpsertRecord, WriteAheadLog

from .conftest import SMALL_WAL

DIM = 16
SECRET_WORD = "zanzibar-quokka-7731"


def _ring(version: int = 1) -> Keyring:
    return Keyring(version, {version: os.urandom(32)})


def _spec(name: str, index: str = "flat"):
    doc = {"collection": name, "dimension": DIM, "metric": "l2", "index": index}
    return parse_collection_spec(doc)


def _vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]


def _fill(store: TenantStore, name: str, index: str, seed: int, compact: bool) -> np.ndarray:
    store.create_collection(_spec(name, index))
    coll = store.collection(name)
    vectors = _vectors(40, seed)
    meta = [{"word": f"{SECRET_WORD}-{i}"} for i in range(40)]
    coll.upsert([f"id-{SECRET_WORD}-{i}" for i in range(40)], meta, vectors)
    if compact:
        coll.compact()
    if index == "hnsw":
        coll.flush_index()
    return vectors


def _assert_no_plaintext(root: Path, vectors: list[np.ndarray]) -> None:
    for path, data in _all_bytes(root):
        assert SECRET_WORD.encode() not in data, path
        for matrix in vectors:
            for row in matrix:
                assert row.tobytes() not in data, path
                # a row's first two floats (8 bytes) would already give it away
                assert row[:2].tobytes() not in data, path


# ---- the chunked file format -------------------------------------------------------


def test_sealed_round_trip_across_chunks() -> None:
    ring = _ring()
    data = os.urandom(CHUNK_SIZE * 2 + 123)
    sealed = seal_bytes(data, ring)
    assert data[:64] not in sealed
    assert open_bytes(sealed, ring, "f", allow_plain=False) == data
    assert open_bytes(seal_bytes(b"", ring), ring, "f", allow_plain=False) == b""


def test_flipped_byte_truncation_and_wrong_key_fail_authentication() -> None:
    ring = _ring()
    sealed = seal_bytes(os.urandom(5000), ring, chunk_size=1024)
    for offset in (HEADER_SIZE + 30, len(sealed) - 1, 10):
        damaged = bytearray(sealed)
        damaged[offset] ^= 1
        with pytest.raises(IntegrityError):
            open_bytes(bytes(damaged), ring, "f", allow_plain=False)
    # cut at a chunk boundary: the new last chunk lacks the "last" flag
    first_two = HEADER_SIZE + 2 * (4 + 12 + 1024 + 16)
    with pytest.raises(IntegrityError, match="authentication"):
        open_bytes(sealed[:first_two], ring, "f", allow_plain=False)
    with pytest.raises(IntegrityError, match="authentication"):
        open_bytes(sealed, Keyring(1, {1: os.urandom(32)}), "f", allow_plain=False)
    with pytest.raises(IntegrityError, match="not encrypted"):
        open_bytes(b"plain", ring, "f", allow_plain=False)


def test_a_chunk_moved_between_files_or_tenants_fails() -> None:
    ring, other = _ring(), _ring()
    a = seal_bytes(os.urandom(3000), ring, chunk_size=1024)
    b = seal_bytes(os.urandom(3000), ring, chunk_size=1024)
    c = seal_bytes(os.urandom(3000), other, chunk_size=1024)
    chunk = 4 + 12 + 1024 + 16
    for donor in (b, c):
        spliced = a[: HEADER_SIZE + chunk] + donor[HEADER_SIZE + chunk : HEADER_SIZE + 2 * chunk]
        spliced += a[HEADER_SIZE + 2 * chunk :]
        with pytest.raises(IntegrityError, match="chunk 1 fails"):
            list(sealed_chunks(spliced, ring, "f"))
    # chunks swapped within one file fail too (the index is in the associated data)
    swapped = (
        a[:HEADER_SIZE]
        + a[HEADER_SIZE + chunk : HEADER_SIZE + 2 * chunk]
        + a[HEADER_SIZE : HEADER_SIZE + chunk]
        + a[HEADER_SIZE + 2 * chunk :]
    )
    with pytest.raises(IntegrityError, match="chunk 0 fails"):
        list(sealed_chunks(swapped, ring, "f"))


def test_keyring_never_prints_its_keys() -> None:
    ring = _ring()
    assert ring.keys[1].hex() not in repr(ring)
    assert Keyring.from_wire(ring.to_wire()) == ring


# ---- the write-ahead log -----------------------------------------------------------


def _record(n: int, seed: int) -> UpsertRecord:
    return UpsertRecord(
        [f"{SECRET_WORD}{seed}-{i}" for i in range(n)], [None] * n, _vectors(n, seed)
    )


def test_sealed_log_replays_and_drops_a_torn_tail(tmp_path: Path) -> None:
    ring, path = _ring(), tmp_path / "wal-0.log"
    wal = WriteAheadLog(path, ring)
    wal.append([_record(3, 1)])
    wal.append([_record(2, 2)])
    wal.close()
    assert SECRET_WORD.encode() not in path.read_bytes()
    with path.open("ab") as fh:
        fh.write(b"\x40\x00\x00\x00partial")
    wal = WriteAheadLog(path, ring)
    assert [len(r.ids) for r in wal.replay()] == [3, 2]
    wal.close()
    # a flipped byte in the last record is a torn tail: dropped
    data = bytearray(path.read_bytes())
    data[-3] ^= 1
    path.write_bytes(bytes(data))
    wal = WriteAheadLog(path, ring)
    assert [len(r.ids) for r in wal.replay()] == [3]
    wal.close()


def test_sealed_log_refuses_damage_before_an_intact_record(tmp_path: Path) -> None:
    ring, path = _ring(), tmp_path / "wal-0.log"
    wal = WriteAheadLog(path, ring)
    wal.append([_record(3, 1)])
    wal.append([_record(2, 2)])
    wal.close()
    data = bytearray(path.read_bytes())
    data[40] ^= 1  # inside the first record
    path.write_bytes(bytes(data))
    wal = WriteAheadLog(path, ring)
    with pytest.raises(IntegrityError, match="intact records after it"):
        list(wal.replay())
    wal.close()


# ---- a tenant's files --------------------------------------------------------------


def test_no_plaintext_vector_or_metadata_anywhere(hot: Path) -> None:
    ring = _ring()
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=ring)
    kept = [
        _fill(store, "flat_compacted", "flat", 1, compact=True),
        _fill(store, "flat_logged", "flat", 2, compact=False),
        _fill(store, "graph", "hnsw", 3, compact=True),
    ]
    store.close()
    assert (hot / "tenant_a" / "graph" / "hnsw.index").is_file()
    _assert_no_plaintext(hot, kept)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=ring)
    for name, vectors in zip(("flat_compacted", "flat_logged", "graph"), kept, strict=True):
        ids, _meta, values = store.collection(name).fetch([f"id-{SECRET_WORD}-7"])
        assert ids and np.array_equal(values[0], vectors[7])
        assert read_manifest(hot / "tenant_a" / name).key_version == 1
    store.close()
    # No other key opens them (a deleted client's files stay unreadable).
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=_ring())
    with pytest.raises(StoreError) as refused:
        store.collection("flat_compacted")
    assert refused.value.code == ErrorCode.UNAVAILABLE
    assert "integrity" in refused.value.message
    store.close()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target", ["segment", "wal", "index"])
def test_tampering_refuses_that_collection_only(hot: Path, target: str) -> None:
    ring = _ring()
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=ring)
    _fill(store, "victim", "hnsw", 1, compact=True)
    victim = store.collection("victim")
    victim.upsert(["late-1"], [None], _vectors(1, 9))
    victim.upsert(["late-2"], [None], _vectors(1, 10))
    _fill(store, "bystander", "flat", 2, compact=True)
    store.close()
    directory = hot / "tenant_a" / "victim"
    manifest = read_manifest(directory)
    if target == "segment":
        _flip(directory / manifest.segment / "metadata.jsonl", HEADER_SIZE + 20)
        # the manifest's CRC would catch it first; give it the new CRC to reach the AEAD
        from workers.integrity import file_checksum
        from workers.segment import write_manifest

        sums = dict(manifest.checksums or {})
        sums[f"{manifest.segment}/metadata.jsonl"] = file_checksum(
            directory / manifest.segment / "metadata.jsonl"
        )
        write_manifest(directory, type(manifest)(**{**_fields(manifest), "checksums": sums}))
    elif target == "wal":
        _flip(directory / manifest.wal, 28 + 30)  # the first record, not the tail
    else:
        _flip(directory / "hnsw.index", HEADER_SIZE + 40)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=ring)
    with pytest.raises(StoreError) as refused:
        store.collection("victim")
    assert refused.value.code == ErrorCode.UNAVAILABLE
    assert "integrity check" in refused.value.message
    assert store.collection("bystander").vector_count == 40
    store.close()


def _fields(manifest: object) -> dict[str, object]:
    return {name: getattr(manifest, name) for name in manifest.__slots__}  # type: ignore[attr-defined]


def test_plaintext_collection_is_encrypted_in_place_on_first_keyed_load(hot: Path) -> None:
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    old = [_fill(store, "graph", "hnsw", 1, compact=True), _fill(store, "log", "flat", 2, False)]
    store.close()
    assert any(SECRET_WORD.encode() in data for _p, data in _all_bytes(hot))
    ring = _ring()
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=ring)
    assert store.reseal_all() == ["graph", "log"]
    store.close()
    _assert_no_plaintext(hot, old)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=ring)
    assert store.collection("graph").vector_count == 40
    assert store.collection("log").vector_count == 40
    store.close()


def test_rotation_rewrites_under_the_new_key_and_the_old_one_can_go(hot: Path) -> None:
    v1 = _ring(1)
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=v1)
    vectors = _fill(store, "graph", "hnsw", 1, compact=False)
    store.close()
    both = Keyring(2, {1: v1.keys[1], 2: os.urandom(32)})
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=both)
    store.reseal_all()
    store.close()
    assert read_manifest(hot / "tenant_a" / "graph").key_version == 2
    only_new = Keyring(2, {2: both.keys[2]})
    store = TenantStore.open(hot, "tenant_a", SMALL_WAL, keyring=only_new)
    ids, _m, values = store.collection("graph").fetch(["id-zanzibar-quokka-7731-3"])
    assert ids and np.array_equal(values[0], vectors[3])
    store.close()
