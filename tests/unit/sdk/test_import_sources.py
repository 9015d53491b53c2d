"""Input files for ``vectorpanda import``: rows, skips and resuming from any row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vectorpanda.import_sources import SourceError, open_source


def rows_of(path: Path, start: int, batch: int) -> tuple[list[str], list[int]]:
    source = open_source(path)
    ids: list[str] = []
    skipped: list[int] = []
    expected_start = start
    for b in source.batches(start, batch):
        assert b.start == expected_start and b.stop - b.start <= batch
        expected_start = b.stop
        ids += b.ids
        skipped += [row for row, _ in b.skipped]
    assert expected_start == source.rows
    return ids, skipped


def test_jsonl_resumes_at_any_row_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = [orjson.dumps({"id": f"r{i}", "values": [float(i), 1.0]}).decode() for i in range(25)]
    lines[3] = '{"id": "bad", "values": [1.0]}'
    lines[4] = ""
    lines[17] = '{"id": "nan", "values": [NaN, 1.0]}'
    path = tmp_path / "v.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ids, skipped = rows_of(path, 0, 10)
    assert skipped == [3, 17] and len(ids) == 22
    ids, skipped = rows_of(path, 12, 10)
    assert ids[0] == "r12" and skipped == [17] and len(ids) == 12


def test_parquet_resumes_inside_a_row_group(tmp_path: Path) -> None:
    n = 50
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "values": [[float(i), 0.0, 1.0] for i in range(n)],
            "metadata": [orjson.dumps({"i": i}).decode() for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=20)
    source = open_source(tmp_path / "v.parquet")
    assert source.rows == n and source.dimension == 3
    batches = list(source.batches(33, 8))
    assert batches[0].start == 33 and batches[0].ids[0] == "p33"
    assert batches[0].metadata is not None and batches[0].metadata[0] == {"i": 33}
    assert sum(len(b.ids) for b in batches) == n - 33


def test_npy_ids_file_must_match_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.ones((4, 2), dtype=np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    with pytest.raises(SourceError, match="3 ids for 4 rows"):
        open_source(tmp_path / "v.npy", tmp_path / "ids.txt")
    with pytest.raises(SourceError, match="unsupported"):
        (tmp_path / "v.csv").write_text("x")
        open_source(tmp_path / "v.csv")
