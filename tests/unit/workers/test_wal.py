"""The write-ahead log keeps every whole record and drops only a torn or corrupt tail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.integrity import IntegrityError
from workers.wal import DeleteRecord, UpsertRecord, WalRecord, WriteAheadLog


def _upsert(seed: int, n: int = 3, d: int = 4) -> UpsertRecord:
    rng = np.random.default_rng(seed)
    ids = [f"v{seed}-{i}" for i in range(n)]
    metadata = [{"seed": seed, "i": i} if i % 2 else None for i in range(n)]
    return UpsertRecord(ids, metadata, rng.standard_normal((n, d), dtype=np.float32))


def _same(a: WalRecord, b: WalRecord) -> bool:
    if type(a) is not type(b) or a.ids != b.ids:
        return False
    if isinstance(a, UpsertRecord) and isinstance(b, UpsertRecord):
        return a.metadata == b.metadata and a.vectors.tobytes() == b.vectors.tobytes()
    return True


def _write(path: Path, records: list[WalRecord]) -> list[int]:
    """Append records one at a time; return the file size after each."""
    wal = WriteAheadLog(path)
    sizes = []
    for record in records:
        wal.append([record])
        sizes.append(wal.size)
    wal.close()
    return sizes


def test_round_trip_keeps_order_and_exact_values(tmp_path: Path) -> None:
    records: list[WalRecord] = [_upsert(1), DeleteRecord(["v1-0"]), _upsert(2, n=1), _upsert(3)]
    path = tmp_path / "wal.log"
    sizes = _write(path, records)
    assert path.stat().st_size == sizes[-1]
    wal = WriteAheadLog(path)
    replayed = list(wal.replay())
    assert len(replayed) == len(records)
    assert all(_same(a, b) for a, b in zip(records, replayed, strict=True))
    assert wal.size == sizes[-1]


def test_batch_append_writes_all_records(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "wal.log")
    wal.append([_upsert(1), _upsert(2)])
    wal.close()
    assert [r.ids for r in WriteAheadLog(tmp_path / "wal.log").replay()] == [
        _upsert(1).ids,
        _upsert(2).ids,
    ]


@pytest.mark.parametrize("cut", [1, 4, 7, 8, 9, 20, -1])
def test_truncated_tail_is_dropped_and_earlier_records_survive(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "wal.log"
    sizes = _write(path, [_upsert(1), _upsert(2), _upsert(3)])
    torn_at = sizes[1] + cut if cut > 0 else sizes[2] + cut
    with path.open("r+b") as fh:
        fh.truncate(torn_at)
    wal = WriteAheadLog(path)
    replayed = list(wal.replay())
    assert [r.ids for r in replayed] == [_upsert(1).ids, _upsert(2).ids]
    # The file is cut back to the last good record, so the next append is clean.
    assert path.stat().st_size == sizes[1] == wal.size
    wal.append([_upsert(4)])
    wal.close()
    again = list(WriteAheadLog(path).replay())
    assert [r.ids for r in again] == [_upsert(1).ids, _upsert(2).ids, _upsert(4).ids]


@pytest.mark.parametrize("where", ["length", "crc", "payload"])
def test_damaged_last_record_is_a_torn_tail_and_is_dropped(tmp_path: Path, where: str) -> None:
    path = tmp_path / "wal.log"
    sizes = _write(path, [_upsert(1), _upsert(2), _upsert(3)])
    offset = {"length": sizes[1] + 1, "crc": sizes[1] + 5, "payload": sizes[1] + 30}[where]
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    replayed = list(WriteAheadLog(path).replay())
    assert [r.ids for r in replayed] == [_upsert(1).ids, _upsert(2).ids]
    assert path.stat().st_size == sizes[1]


@pytest.mark.parametrize("where", ["length", "crc", "payload"])
def test_damage_in_the_middle_is_refused_not_truncated(tmp_path: Path, where: str) -> None:
    """Acknowledged records after a damaged one must never be cut off silently."""
    path = tmp_path / "wal.log"
    sizes = _write(path, [_upsert(1), _upsert(2), _upsert(3)])
    offset = {"length": sizes[0] + 1, "crc": sizes[0] + 5, "payload": sizes[0] + 30}[where]
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as refused:
        list(WriteAheadLog(path).replay())
    assert refused.value.file == "wal.log" and f"byte {sizes[0]}" in refused.value.reason
    assert path.read_bytes() == bytes(data)  # left exactly as found, for the operators


def test_zero_filled_tail_is_not_mistaken_for_records(tmp_path: Path) -> None:
    path = tmp_path / "wal.log"
    sizes = _write(path, [_upsert(1)])
    with path.open("ab") as fh:
        fh.write(b"\0" * 64)
    assert [r.ids for r in WriteAheadLog(path).replay()] == [_upsert(1).ids]
    assert path.stat().st_size == sizes[0]


def test_empty_and_missing_logs_replay_nothing(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "new.log")
    assert list(wal.replay()) == []
    assert wal.size == 0
    assert (tmp_path / "new.log").exists()
