"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import pg_database, pg_url  # noqa: F401  (fixtures)
from tests.serial import is_serial
from tests.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One ``vectorpanda up`` (2 workers) shared by a test module."""
    data_dir: Path = tmp_path_factory.mktemp("vp-data")
    with running_stack(data_dir) as s:
        yield s


# A test's lines for the end of the run (record_property), shown whichever process ran it.
SUMMARY_PROPERTY = "summary"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the summary lines tests recorded (xdist hides a worker's own output)."""
    lines = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for key, value in getattr(report, "user_properties", ())
        if key == SUMMARY_PROPERTY
    ]
    if lines:
        terminalreporter.section("recorded by tests")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of ``make test``'s serial pass (see tests/serial.py)."""
    for item in items:
        if is_serial(item.nodeid):
            item.add_marker(pytest.mark.serial)
