"""Key cache eviction from the bus: every coordinator process forgets stale keys.

Commands evict the cache of the process that ran them before they return; a
coordinator that shares the control database learns of the change from the
bus. The queue is this process's own (``<exchange>.key-cache.<coordinator
id>``) and expires when the process has been gone a while.
"""

from __future__ import annotations

from coordinator.accounts.key_cache import EVICTING_EVENT_TYPES, KeyCache
from eventlog.bus import Delivery, PoisonMessage, decode_message

# The queue hears exactly the events the cache evicts on (one list, in key_cache.py).
KEY_CACHE_BINDINGS: tuple[str, ...] = EVICTING_EVENT_TYPES
# A dead coordinator's queue is removed by the broker after this long unused.
QUEUE_EXPIRES_S = 600.0


def key_cache_queue(exchange: str, coordinator_id: str) -> str:
    return f"{exchange}.key-cache.{coordinator_id}"


class KeyCacheEviction:
    """A bus consumer: evict what each delivered event makes stale (idempotent)."""

    def __init__(self, key_cache: KeyCache) -> None:
        self._key_cache = key_cache
        self.applied = 0

    async def handle(self, delivery: Delivery) -> None:
        # Eviction is idempotent, so redeliveries need no checkpoint; poison raises.
        try:
            self._key_cache.apply([decode_message(delivery.body)])
        except (PoisonMessage, ValueError, KeyError, TypeError) as exc:
            # What it meant to evict is unknown: forget every cached key (the cache
            # refills from the database), then dead-letter the message for good.
            self._key_cache.evict_all()
            if isinstance(exc, PoisonMessage):
                raise
            raise PoisonMessage(f"the event cannot be applied: {exc}") from exc
        self.applied += 1
