"""The projections service: feeds the audit tables from the bus (or by polling the log)."""

from __future__ import annotations

import asyncio
import logging

from eventlog.bus import Bus
from eventlog.consumer import CheckpointedConsumer, EventReader
from eventlog.stopping import wait_or_stop
from projections.audit_store import AuditProjection

log = logging.getLogger("vectorpanda.projections")


def projections_queue(exchange: str) -> str:
    return f"{exchange}.projections"


class ProjectorService:
    """One checkpointed consumer of every event type, into the audit database."""

    def __init__(
        self, projection: AuditProjection, events: EventReader, bus: Bus | None, queue: str
    ) -> None:
        self.projection = projection
        self.consumer = CheckpointedConsumer(projection, events)
        self._bus = bus
        self.queue = queue

    async def prepare(self) -> None:
        """Declare the queue (before the relay publishes, so nothing is unroutable)."""
        if self._bus is not None:
            await self._bus.declare_queue(self.queue, ["#"])

    async def run(self, stop: asyncio.Event, poll_s: float = 0.5) -> None:
        """Catch up from the log, then follow the bus (or poll the log without one)."""
        await self.consumer.catch_up()
        if self._bus is None:
            while not stop.is_set():
                try:
                    await self.consumer.catch_up()
                except Exception:
                    log.exception("projection catch-up failed; retrying")
                await wait_or_stop(stop, poll_s)
            return
        subscription = await self._bus.consume(self.queue, self.consumer.handle)
        try:
            await stop.wait()
        finally:
            await subscription.cancel()
