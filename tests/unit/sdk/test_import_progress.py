"""``vectorpanda import`` off a terminal: one distinct, rising progress line per tenth crossed."""

from __future__ import annotations

import io
import re

from rich.console import Console

from vectorpanda.bulk_import import ProgressReport


def lines_for(total: int, steps: list[int]) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with ProgressReport(console, total, 0, "import") as progress:
        for done in steps:
            progress.advance_to(done)
    return [line for line in out.getvalue().splitlines() if line.startswith("progress:")]


def test_big_batches_print_each_figure_once_and_rising() -> None:
    lines = lines_for(1000, [350, 350, 999, 1000])
    assert lines == [
        "progress: 350/1,000 rows (35%)",
        "progress: 999/1,000 rows (99%)",
        "progress: 1,000/1,000 rows (100%)",
    ]


def test_small_batches_print_every_tenth() -> None:
    lines = lines_for(100, list(range(5, 101, 5)))
    figures = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]
    assert figures == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert len(set(lines)) == len(lines)
