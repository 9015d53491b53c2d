"""The serial pass of ``make test`` names real test files (a rename would drop one silently)."""

from __future__ import annotations

from pathlib import Path

from tests.serial import SERIAL_DIRS, SERIAL_MODULES, is_serial

ROOT = Path(__file__).resolve().parents[2]


def test_every_serial_module_and_directory_exists() -> None:
    missing = [p for p in (*SERIAL_MODULES, *SERIAL_DIRS) if not (ROOT / p).exists()]
    assert not missing, f"tests/serial.py lists test files that do not exist: {missing}"


def test_serial_is_decided_by_the_file_a_test_is_in() -> None:
    assert is_serial("tests/integration/test_flood.py::test_x[a-b]")
    assert is_serial("tests/e2e/test_tls_fleet.py::test_y")
    assert not is_serial("tests/integration/test_sdk.py::test_z")
    assert not is_serial("tests/unit/test_import_graph.py::test_w")
