"""The bus contract against the local (embedded) bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventlog.local_bus import LocalBus
from tests.unit.eventlog.bus_contract import BusContract


class TestLocalBus(BusContract):
    @pytest.fixture
    async def bus(self) -> AsyncIterator[LocalBus]:
        bus = LocalBus(delivery_limit=4)
        await bus.connect()
        yield bus
        await bus.close()

    @pytest.fixture
    def qname(self):
        return lambda name: f"test.{name}"

    @pytest.fixture
    def inject_raw(self):
        async def inject(bus: LocalBus, key: str, body: bytes) -> None:
            await bus.publish_raw(key, body)

        return inject
