"""``vectorpanda import``: batches from a file into a collection, resumable.

After every acknowledged batch a small checkpoint is written next to the input
(``<input>.vp-import.json``, write-temp + rename); ``--resume`` continues from
it. The same file holds the summary at the end: imported, skipped, failed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vectorpanda.import_sources import Batch, Source
from vectorpanda_client import Client, InvalidError, PayloadTooLargeError, VectorPandaError

CHECKPOINT_SUFFIX = ".vp-import.json"
MAX_LISTED = 50  # skipped rows and failures kept in the checkpoint, the rest only counted
# Refusals that concern only the batch sent; anything else stops the import.
BATCH_ERRORS = (InvalidError, PayloadTooLargeError)


def checkpoint_path_for(input_path: Path) -> Path:
    return input_path.with_name(input_path.name + CHECKPOINT_SUFFIX)


@dataclass
class Checkpoint:
    """Where an import stands; also its final summary."""

    input: str
    size: int
    mtime_ns: int
    collection: str
    rows: int
    next_row: int = 0
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    skipped_rows: list[list[Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stopped_by: str | None = None

    @classmethod
    def fresh(cls, input_path: Path, collection: str, rows: int, start_row: int) -> Checkpoint:
        stat = input_path.stat()
        return cls(
            str(input_path.resolve()), stat.st_size, stat.st_mtime_ns, collection, rows, start_row
        )

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        return cls(**orjson.loads(path.read_bytes()))

    def matches(self, input_path: Path, collection: str) -> str | None:
        """Why this checkpoint cannot resume that import, or None if it can."""
        stat = input_path.stat()
        if self.collection != collection:
            return f"it is for collection '{self.collection}', not '{collection}'"
        if (self.size, self.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            return "the input file has changed since"
        return None

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    def record_batch(self, batch: Batch, imported: int) -> None:
        self.imported += imported
        self.skipped += len(batch.skipped)
        room = MAX_LISTED - len(self.skipped_rows)
        self.skipped_rows.extend([row, why] for row, why in batch.skipped[: max(0, room)])
        self.next_row = batch.stop

    def record_failure(self, batch: Batch, error: VectorPandaError) -> None:
        self.failed += len(batch.ids)
        if len(self.failures) < MAX_LISTED:
            self.failures.append(
                {"rows": [batch.start, batch.stop], "code": error.code, "message": error.message}
            )


class ProgressReport:
    """A rich progress bar on a terminal; a plain line every 10 % otherwise."""

    def __init__(self, console: Console, total: int, done: int, label: str) -> None:
        self._console = console
        self._total = max(total, 1)
        self._plain = not console.is_terminal
        self._next_tenth = (done * 10 // self._total) + 1
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=self._plain,
        )
        self._task = self._progress.add_task(label, total=total, completed=done)

    def __enter__(self) -> ProgressReport:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance_to(self, done: int) -> None:
        self._progress.update(self._task, completed=done)
        if self._plain and self._next_tenth <= 10 and done * 10 >= self._next_tenth * self._total:
            # One line per crossing, with the true figure: a batch that jumps several
            # tenths prints once, so the lines are distinct and only ever go up.
            pct = min(100, done * 100 // self._total)
            self._console.print(f"progress: {done:,}/{self._total:,} rows ({pct}%)")
            self._next_tenth = done * 10 // self._total + 1


def run_import(
    client: Client,
    source: Source,
    checkpoint: Checkpoint,
    checkpoint_path: Path,
    batch_size: int,
    console: Console,
) -> Checkpoint:
    """Send every remaining batch; stop at the first error that is not about one batch."""
    collection = client.collection(checkpoint.collection)
    label = f"importing into {checkpoint.collection}"
    checkpoint.stopped_by = None
    with ProgressReport(console, source.rows, checkpoint.next_row, label) as progress:
        for batch in source.batches(checkpoint.next_row, batch_size):
            if batch.ids:
                try:
                    done = collection.upsert(batch.ids, batch.vectors, batch.metadata)
                except BATCH_ERRORS as exc:
                    checkpoint.record_failure(batch, exc)
                    done = 0
                except VectorPandaError as exc:
                    checkpoint.stopped_by = str(exc)
                    break
            else:
                done = 0
            checkpoint.record_batch(batch, done)
            checkpoint.save(checkpoint_path)
            progress.advance_to(checkpoint.next_row)
    checkpoint.finished = checkpoint.stopped_by is None and checkpoint.next_row >= source.rows
    checkpoint.save(checkpoint_path)
    return checkpoint


def print_summary(out: Console, cp: Checkpoint, path: Path, elapsed: float) -> None:
    """The closing lines: counts, where the checkpoint is, how to resume."""
    rate = cp.imported / elapsed if elapsed > 0 else 0.0
    state = "finished" if cp.finished else "STOPPED"
    out.print(
        f"import {state}: {cp.imported:,} vectors imported into '{cp.collection}', "
        f"{cp.skipped:,} rows skipped, {cp.failed:,} failed "
        f"(rows done {cp.next_row:,}/{cp.rows:,}; {elapsed:.1f} s this run, {rate:,.0f}/s)",
        highlight=False,
    )
    for row, why in cp.skipped_rows[:10]:
        out.print(f"  skipped row {row}: {why}", highlight=False)
    for failure in cp.failures[:10]:
        rows = failure["rows"]
        out.print(
            f"  failed rows {rows[0]}-{rows[1]}: {failure['code']}: {failure['message']}",
            highlight=False,
        )
    if cp.stopped_by:
        out.print(f"stopped by: {cp.stopped_by}", highlight=False)
        out.print("Fix the cause, then run the same command with --resume.", highlight=False)
    out.print(f"summary and checkpoint: {path}", highlight=False)
