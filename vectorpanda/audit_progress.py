"""Progress and the verdict on a terminal for ``vectorpanda audit`` (rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressFn = Callable[[int, int], None]


@contextmanager
def audit_progress(label: str, *, enabled: bool) -> Iterator[ProgressFn | None]:
    """A ``progress(done, total)`` callback drawing a rich bar, or None when not enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield update


def print_verdict(summary: dict[str, Any]) -> None:
    """The verify summary for a person: the verdict, then each mismatch."""
    from rich.console import Console

    console = Console()
    verdict = "[green]OK[/green]" if summary["ok"] else "[red]FAILED[/red]"
    console.print(
        f"{verdict} {summary['mode']} verify: {summary['events']:,} events "
        f"(seq {summary['since_seq'] + 1}..{summary['head_seq']}), "
        f"audit tables through seq {summary['checkpoint']}"
    )
    anchors = summary.get("anchors")
    if anchors:
        console.print(
            f"anchors: {anchors['checked']} checked, newest seq {anchors['last_anchored_seq']} "
            f"({anchors['last_anchor']})"
        )
    for m in summary["mismatches"]:
        console.print(f"  seq {m['seq']}: {m['reason']}", markup=False, highlight=False)
    recorded = summary.get("recorded_checkpoint")
    if recorded:
        console.print(f"checkpoint recorded at seq {recorded['seq']}")
