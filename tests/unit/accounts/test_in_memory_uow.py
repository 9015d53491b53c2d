"""The unit-of-work contract against the in-memory unit of work."""

from __future__ import annotations

import pytest

from coordinator.accounts import Accounts
from coordinator.accounts.memory_uow import InMemoryUnitOfWork
from tests.unit.accounts.uow_contract import MakeUow, UnitOfWorkContract


class TestInMemoryUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def make_uow(self) -> MakeUow:
        return InMemoryUnitOfWork


async def test_in_memory_accounts_are_always_writable() -> None:
    assert await Accounts.in_memory(b"p" * 32).writable() is True
