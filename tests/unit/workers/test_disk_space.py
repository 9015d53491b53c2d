"""Free space as a resource: the floor, the ENOSPC answer, and no half-written WAL record."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from workers.disk_space import GIB, SpaceGuard, is_out_of_space
from workers.errors import StoreError
from workers.protocol import ErrorCode, Op
from workers.wal import DeleteRecord, UpsertRecord, WriteAheadLog


def test_growing_writes_are_refused_below_the_floor(tmp_path: Path) -> None:
    short = SpaceGuard(tmp_path, None, min_free_bytes=1 << 62)
    for op in (Op.UPSERT, Op.CREATE_COLLECTION, Op.UPDATE_METADATA):
        with pytest.raises(StoreError) as refused:
            short.check_write(op)
        assert refused.value.code == ErrorCode.INSUFFICIENT_STORAGE
        assert "delet" in refused.value.message.lower()
    for op in (Op.QUERY, Op.FETCH, Op.DELETE, Op.DELETE_COLLECTION, Op.LIST_COLLECTIONS,
               Op.LIST_VECTORS, Op.COUNT_VECTORS):  # fmt: skip
        short.check_write(op)
    SpaceGuard(tmp_path, None, min_free_bytes=0).check_write(Op.UPSERT)


def test_the_default_floor_is_the_larger_of_1_gib_and_5_percent(tmp_path: Path) -> None:
    space = SpaceGuard(tmp_path, None, None).measure(tmp_path)
    assert space.min_free_bytes == max(GIB, int(space.total_bytes * 0.05))
    report = SpaceGuard(tmp_path, tmp_path / "missing", 7).report()
    assert set(report) == {"hot"} and report["hot"]["min_free_bytes"] == 7
    assert 0 < report["hot"]["free_bytes"] <= report["hot"]["total_bytes"]


def test_enospc_is_recognised_even_when_wrapped() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert is_out_of_space(full)
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("segment write failed") from exc
    except RuntimeError as wrapped:
        assert is_out_of_space(wrapped)
    assert not is_out_of_space(OSError(errno.EACCES, "denied"))


def test_a_write_cut_short_by_a_full_disk_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WriteAheadLog(tmp_path / "wal-1.log")
    first = UpsertRecord(["a"], [None], np.ones((1, 4), np.float32))
    wal.append([first])
    size = wal.size
    real_write = os.write

    def half_then_full(fd: int, data: memoryview | bytes) -> int:
        if len(data) > 8:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("workers.wal.os.write", half_then_full)
    big = UpsertRecord(["b", "c"], [None, None], np.zeros((2, 4), np.float32))
    with pytest.raises(OSError) as full:
        wal.append([big])
    assert full.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert wal.size == size == (tmp_path / "wal-1.log").stat().st_size
    wal.append([DeleteRecord(["a"])])  # the next record follows the last good one
    wal.close()
    records = list(WriteAheadLog(tmp_path / "wal-1.log").replay())
    assert [type(r).__name__ for r in records] == ["UpsertRecord", "DeleteRecord"]
