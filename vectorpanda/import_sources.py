"""Input files for ``vectorpanda import``: .npy (+ ids file), .jsonl and .parquet.

Each source numbers its rows from 0 and yields batches from any start row, so
an interrupted import can resume where it stopped. Rows that cannot be sent
(non-finite values, wrong width, malformed lines) are skipped with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

SUFFIXES = (".npy", ".jsonl", ".parquet")


class SourceError(Exception):
    """The input file cannot be read as a source of vectors."""


@dataclass
class Batch:
    """Rows ``[start, stop)`` of the input: what can be sent, and what was skipped."""

    start: int
    stop: int
    ids: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, Any] | None] | None
    skipped: list[tuple[int, str]] = field(default_factory=list)


class Source(Protocol):
    rows: int
    dimension: int | None

    def batches(self, start_row: int, batch_size: int) -> Iterator[Batch]: ...


def _keep_finite(
    span: tuple[int, int],
    rows: list[int],
    ids: list[str],
    matrix: np.ndarray,
    metadata: list[dict[str, Any] | None] | None,
    skipped: list[tuple[int, str]],
) -> Batch:
    """Drop rows with NaN/Inf (recording them) and package the rest as rows ``span``."""
    good = np.isfinite(matrix).all(axis=1)
    if not good.all():
        for i in np.flatnonzero(~good):
            skipped.append((rows[int(i)], "values are not all finite (NaN or Infinity)"))
        keep = np.flatnonzero(good)
        ids = [ids[i] for i in keep]
        metadata = [metadata[i] for i in keep] if metadata is not None else None
        matrix = matrix[keep]
    skipped.sort()
    if metadata is not None and all(m is None for m in metadata):
        metadata = None
    return Batch(span[0], span[1], ids, matrix, metadata, skipped)


class NpySource:
    """A 2-D float array; ids from a text file (one per line) or the row numbers."""

    def __init__(self, path: Path, ids_path: Path | None = None) -> None:
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise SourceError(f"{path}: not a readable .npy array ({exc})") from None
        if self._array.ndim != 2 or self._array.shape[1] == 0:
            raise SourceError(f"{path}: expected a 2-D array (rows x dimension)")
        self.rows = int(self._array.shape[0])
        self.dimension: int | None = int(self._array.shape[1])
        self._ids: list[str] | None = None
        if ids_path is not None:
            lines = ids_path.read_text(encoding="utf-8").splitlines()
            if len(lines) != self.rows:
                raise SourceError(
                    f"{ids_path} has {len(lines)} ids for {self.rows} rows in {path}; "
                    "it needs one id per line, one line per row"
                )
            self._ids = lines

    def batches(self, start_row: int, batch_size: int) -> Iterator[Batch]:
        for start in range(start_row, self.rows, batch_size):
            stop = min(start + batch_size, self.rows)
            matrix = np.asarray(self._array[start:stop], dtype=np.float32)
            ids = self._ids[start:stop] if self._ids else [str(i) for i in range(start, stop)]
            rows = list(range(start, stop))
            skipped = [(start + i, "empty id") for i, v in enumerate(ids) if not v]
            if skipped:
                keep = [i for i, v in enumerate(ids) if v]
                ids, matrix, rows = [ids[i] for i in keep], matrix[keep], [rows[i] for i in keep]
            yield _keep_finite((start, stop), rows, ids, matrix, None, skipped)


def _row_fields(row: Any, dimension: int | None) -> tuple[str, list[float], dict[str, Any] | None]:
    """id, values and metadata of one record, or ValueError saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    vid, values, meta = row.get("id"), row.get("values"), row.get("metadata")
    if isinstance(vid, int) and not isinstance(vid, bool):
        vid = str(vid)
    if not isinstance(vid, str) or not vid:
        raise ValueError("'id' must be a non-empty string")
    if not isinstance(values, list) or not values:
        raise ValueError("'values' must be a non-empty list of numbers")
    if dimension is not None and len(values) != dimension:
        raise ValueError(f"'values' has {len(values)} numbers, expected {dimension}")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("'metadata' must be an object")
    return vid, values, meta


class JsonlSource:
    """One ``{"id", "values", "metadata"?}`` object per line; a line is a row."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.dimension: int | None = None
        with path.open("rb") as fh:
            self.rows = 0
            for line in fh:
                self.rows += 1
                if self.dimension is None and self.rows <= 1000:
                    self.dimension = self._width(line)

    @staticmethod
    def _width(line: bytes) -> int | None:
        """The dimension of the first well-formed row decides the file's dimension."""
        try:
            return len(_row_fields(orjson.loads(line), None)[1])
        except (orjson.JSONDecodeError, ValueError):
            return None

    def batches(self, start_row: int, batch_size: int) -> Iterator[Batch]:
        with self._path.open("rb") as fh:
            for _ in range(start_row):
                if not fh.readline():
                    return
            row = start_row
            while row < self.rows:
                start = row
                ids: list[str] = []
                values: list[list[float]] = []
                metas: list[dict[str, Any] | None] = []
                rows: list[int] = []
                skipped: list[tuple[int, str]] = []
                for line in fh:
                    if not line.strip():  # blank lines are not rows; tolerate them
                        row += 1
                        if row - start >= batch_size:
                            break
                        continue
                    try:
                        vid, vals, meta = _row_fields(orjson.loads(line), self.dimension)
                        if self.dimension is None:
                            self.dimension = len(vals)
                        ids.append(vid)
                        values.append(vals)
                        metas.append(meta)
                        rows.append(row)
                    except (orjson.JSONDecodeError, ValueError) as exc:
                        skipped.append((row, str(exc)))
                    row += 1
                    if row - start >= batch_size:
                        break
                try:
                    matrix = np.asarray(values, dtype=np.float32).reshape(len(ids), -1)
                except (ValueError, TypeError):
                    raise SourceError(f"{self._path}: rows {start}-{row}: bad values") from None
                if row == start:
                    return
                yield _keep_finite((start, row), rows, ids, matrix, metas, skipped)


class ParquetSource:
    """Columns ``id``, ``values`` (list of floats) and optionally ``metadata``."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise SourceError(f"{path}: not a readable Parquet file ({exc})") from None
        names = set(self._file.schema_arrow.names)
        if not {"id", "values"} <= names:
            raise SourceError(f"{path}: needs columns 'id' and 'values' (has {sorted(names)})")
        self._columns = ["id", "values"] + (["metadata"] if "metadata" in names else [])
        self.rows = int(self._file.metadata.num_rows)
        self.dimension: int | None = None
        if self.rows:
            first = next(self._file.iter_batches(1, columns=["values"])).column(0)[0].as_py()
            self.dimension = len(first) if isinstance(first, list) and first else None

    def batches(self, start_row: int, batch_size: int) -> Iterator[Batch]:
        row = 0
        for record_batch in self._file.iter_batches(batch_size, columns=self._columns):
            size = record_batch.num_rows
            if row + size <= start_row:
                row += size
                continue
            offset = max(0, start_row - row)
            table = record_batch.slice(offset)
            yield self._batch(row + offset, table.to_pydict())
            row += size

    def _batch(self, start: int, columns: dict[str, list[Any]]) -> Batch:
        ids: list[str] = []
        values: list[list[float]] = []
        metas: list[dict[str, Any] | None] = []
        rows: list[int] = []
        skipped: list[tuple[int, str]] = []
        raw_meta = columns.get("metadata") or [None] * len(columns["id"])
        records = zip(columns["id"], columns["values"], raw_meta, strict=True)
        for i, (vid, vals, meta) in enumerate(records):
            try:
                if isinstance(meta, str | bytes):
                    meta = orjson.loads(meta) if meta else None
                elif isinstance(meta, list):  # a map<string, ...> column reads as pairs
                    meta = dict(meta)
                vid, vals, meta = _row_fields(
                    {"id": vid, "values": vals, "metadata": meta}, self.dimension
                )
                if self.dimension is None:
                    self.dimension = len(vals)
                if meta is not None:
                    meta = {k: v for k, v in meta.items() if v is not None}
                ids.append(vid)
                values.append(vals)
                metas.append(meta)
                rows.append(start + i)
            except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
                skipped.append((start + i, str(exc)))
        try:
            matrix = np.asarray(values, dtype=np.float32).reshape(len(ids), -1)
        except (ValueError, TypeError):
            raise SourceError(f"rows {start}-{start + len(columns['id'])}: bad values") from None
        span = (start, start + len(columns["id"]))
        return _keep_finite(span, rows, ids, matrix, metas, skipped)


def open_source(path: Path, ids_path: Path | None = None) -> Source:
    """The source for ``path``, chosen by its suffix."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if ids_path is not None and suffix != ".npy":
        raise SourceError("--ids goes with a .npy input; .jsonl and .parquet carry their own ids")
    if suffix == ".npy":
        return NpySource(path, ids_path)
    if suffix == ".jsonl":
        return JsonlSource(path)
    if suffix == ".parquet":
        return ParquetSource(path)
    raise SourceError(f"{path}: unsupported input; use one of {', '.join(SUFFIXES)}")
