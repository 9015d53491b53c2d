"""Server CPU and memory from /proc: a process and all its descendants.

Stdlib only, so the Chroma driver (which runs in Chroma's own venv) uses it too.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # Fields after the command name, which may itself contain spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU of the trees under ``roots`` (live processes, plus the
    children they have already reaped)."""
    total = 0.0
    for root in roots:
        for pid in tree(root):
            try:
                f = _stat(pid)
            except OSError:
                continue
            total += sum(int(x) for x in f[11:15]) / TICKS
    return total


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of one process (its threads, not its children)."""
    return sum(int(x) for x in _stat(pid)[11:13]) / TICKS


def pss_mib(roots: list[int]) -> float:
    """Proportional set size of the trees (shared pages split between their users, so
    PostgreSQL's shared buffers are not counted once per backend), in MiB."""
    return _rollup_mib(roots, "Pss")


def rss_mib(roots: list[int]) -> float:
    """Resident set size of the trees, each process counted whole (shared library and
    shared-memory pages once per process that maps them), in MiB."""
    return _rollup_mib(roots, "Rss")


def each_process_mib(roots: list[int]) -> list[tuple[int, str, float, float]]:
    """Every process of the trees: pid, the first words of its command line, RSS and PSS
    in MiB (which process holds what: a server's fixed part against its data)."""
    found = []
    for root in roots:
        for pid in tree(root):
            try:
                words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                rollup = _rollup_kib(pid)
            except OSError:
                continue
            shown = [w.decode(errors="replace") for w in words[1:] if w and w != b"-m"]
            role = " ".join(shown[:2])
            found.append((pid, role, rollup["Rss"] / 1024, rollup["Pss"] / 1024))
    return found


def _rollup_kib(pid: int) -> dict[str, int]:
    """The process's /proc/<pid>/smaps_rollup totals (Rss, Pss, ...), in KiB."""
    totals = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        totals[name] = int(rest.split()[0])
    return totals


def _rollup_mib(roots: list[int], field: str) -> float:
    total_kib = 0
    for root in roots:
        for pid in tree(root):
            try:
                total_kib += _rollup_kib(pid).get(field, 0)
            except OSError:
                continue
    return total_kib / 1024
