"""The event store contract against the in-memory store."""

from __future__ import annotations

import pytest

from eventlog.memory_store import InMemoryEventStore
from tests.unit.eventlog.event_store_contract import EventStoreContract, MakeStore


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def make_store(self) -> MakeStore:
        return InMemoryEventStore
