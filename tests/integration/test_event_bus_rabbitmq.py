"""The bus contract against a real RabbitMQ (unique exchange and queues per test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from eventlog.amqp_bus import RabbitBus
from tests.stack import amqp_url_or_skip
from tests.unit.eventlog.bus_contract import BusContract

pytestmark = pytest.mark.integration


class TestRabbitBus(BusContract):
    @pytest.fixture
    def names(self) -> list[str]:
        return []

    @pytest.fixture
    def qname(self, names: list[str]):
        prefix = f"vptest.{uuid.uuid4().hex[:10]}"

        def make(name: str) -> str:
            full = f"{prefix}.{name}"
            names.append(full)
            return full

        return make

    @pytest.fixture
    async def bus(self, names: list[str]) -> AsyncIterator[RabbitBus]:
        url = amqp_url_or_skip()
        bus = RabbitBus(url, exchange=f"vptest.{uuid.uuid4().hex[:10]}.events", delivery_limit=4)
        await bus.connect()
        yield bus
        for name in set(names):
            await bus.delete_queue(name)
        await bus.delete_exchanges()
        await bus.close()

    @pytest.fixture
    def inject_raw(self):
        async def inject(bus: RabbitBus, key: str, body: bytes) -> None:
            await bus.publish_raw(key, body)

        return inject
