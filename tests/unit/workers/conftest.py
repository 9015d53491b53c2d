"""Fixtures for the worker's store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.tenant_store import TenantStore

SMALL_WAL = 1 << 30  # large enough that compaction runs only when a test asks


@pytest.fixture
def hot(tmp_path: Path) -> Path:
    return tmp_path / "hot"


@pytest.fixture
def store(hot: Path) -> Iterator[TenantStore]:
    s = TenantStore.open(hot, "tenant_a", SMALL_WAL)
    yield s
    s.close()
