"""KeyCache: the data plane's API key check, one digest compare on a hit.

Entries are found by a seeded xxHash3-128 of the presented key, which only
makes the lookup fast; every hit is still proven by a constant-time compare of a
digest of the whole presented key. An entry is filled only after the key's HMAC
(under the server pepper) matched the stored digest; it keeps, beside the
principal, the key's keyed BLAKE2b (64 bytes) under a random key of this process,
and a hit is proven against that. Same proof, cheaper to compute: OpenSSL's
one-shot HMAC looks up its digest and MAC implementations on every call, which
measured about a twentieth of the coordinator's CPU per query (issue 11);
hashlib's BLAKE2b keyed mode (RFC 7693, a MAC by design) is one small call with
nothing to look up.

A refusal does the same work whatever its reason (unknown key id, wrong secret,
revoked, expired, refused before): each computes one digest and compares it,
so neither the body nor the time of a 401 says whether a key id exists. Expiry
is checked at every lookup, not only when an entry is filled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import xxhash
from cachetools import LRUCache

from coordinator.accounts.key_policy import expired
from coordinator.accounts.model import Principal, digest_matches, parse_api_key
from coordinator.accounts.uow import AccountsUnitOfWork
from eventlog.events import (
    ApiKeyRevoked,
    ClientDeleted,
    ClientPaused,
    ClientResumed,
    TierChanged,
)
from eventlog.records import StoredEvent

# Compared against when there is no stored digest, so that path costs one digest too.
_NO_DIGEST = "0" * 64

# Events after which a client's cached principals (tier, status) are stale.
_CLIENT_CHANGES: tuple[str, ...] = tuple(
    cls.event_type for cls in (TierChanged, ClientPaused, ClientResumed, ClientDeleted)
)
# Every event ``KeyCache.apply`` evicts on: the one list the bus queue binds to as well.
EVICTING_EVENT_TYPES: tuple[str, ...] = (ApiKeyRevoked.event_type, *_CLIENT_CHANGES)


# A cached principal and the proof a presented key must match: its keyed BLAKE2b.
_Entry = tuple[Principal, bytes]


class _PrincipalLRU(LRUCache[int, _Entry]):
    """An LRU that reports what it drops, so the key and client indexes stay exact."""

    def __init__(self, maxsize: int, on_drop: Callable[[Principal], None]) -> None:
        super().__init__(maxsize)
        self._on_drop = on_drop

    def popitem(self) -> tuple[int, _Entry]:
        slot, entry = super().popitem()
        self._on_drop(entry[0])
        return slot, entry


class KeyCache:
    """Bounded LRU of principals in front of the accounts database."""

    def __init__(
        self,
        uow: AccountsUnitOfWork,
        pepper: bytes,
        maxsize: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._uow = uow
        self._pepper = pepper
        # Wall-clock seconds; expiry is judged against it on every lookup.
        self.clock = clock
        # A per-process seed so nobody can precompute colliding keys.
        self._seed = secrets.randbits(64)
        # The key of the hit proofs: per process, never stored, never logged.
        self._proof_key = secrets.token_bytes(32)
        self._cache = _PrincipalLRU(maxsize, self._forget)
        self._slot_of_key: dict[str, int] = {}
        self._keys_of_client: dict[str, set[str]] = {}
        # Bumped by every eviction; a miss that raced one must not refill the cache.
        self._generation = 0
        # Presented keys already proven invalid. A key's secret is 32 random bytes
        # and its id is random, so a string that failed once can never become valid:
        # remembering it makes a flood of bad keys cost no database read. An LRU by hand:
        # the lookup is a flood's whole key check, two C calls on an OrderedDict.
        self._refused: OrderedDict[int, str] = OrderedDict()
        self._refused_max = max(1024, maxsize // 10)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def maxsize(self) -> int:
        return int(self._cache.maxsize)

    def _slot(self, presented: str) -> int:
        return xxhash.xxh3_128_intdigest(presented.encode("utf-8"), seed=self._seed)

    def _proof(self, presented: str) -> bytes:
        return hashlib.blake2b(presented.encode("utf-8"), key=self._proof_key).digest()

    async def authenticate(self, presented: str) -> Principal | None:
        """The principal behind a presented key, or None for any key that is not valid."""
        parsed = parse_api_key(presented)
        if parsed is None:
            return None
        slot = self._slot(presented)
        entry = self._cache.get(slot)
        if entry is not None:
            cached, proof = entry
            if not hmac.compare_digest(self._proof(presented), proof):
                digest_matches(self._pepper, presented, _NO_DIGEST)  # same work as any refusal
                return None
            if expired(cached.expires_at_s, self.clock()):
                self.evict_key(cached.key_id)
                self._refuse(slot, presented)
                return None
            return cached
        if self._refused.get(slot) == presented:
            self._refused.move_to_end(slot)
            digest_matches(self._pepper, presented, _NO_DIGEST)  # same work as any refusal
            return None
        key_id = parsed[0]
        generation = self._generation
        principal = await self._uow.read(lambda tx: tx.find_principal(key_id))
        stored = _NO_DIGEST if principal is None else principal.digest
        # Unknown, revoked and deleted keys compute and compare a digest as well.
        matches = digest_matches(self._pepper, presented, stored)
        if principal is None or not matches or expired(principal.expires_at_s, self.clock()):
            # Nothing makes a refused string valid later: not a revoked key, not an expired one.
            self._refuse(slot, presented)
            return None
        if generation == self._generation:
            self._remember(slot, principal, self._proof(presented))
        return principal

    def _refuse(self, slot: int, presented: str) -> None:
        self._refused[slot] = presented
        self._refused.move_to_end(slot)
        if len(self._refused) > self._refused_max:
            self._refused.popitem(last=False)

    def _remember(self, slot: int, principal: Principal, proof: bytes) -> None:
        self.evict_key(principal.key_id)
        self._cache[slot] = (principal, proof)
        self._slot_of_key[principal.key_id] = slot
        self._keys_of_client.setdefault(principal.client_id, set()).add(principal.key_id)

    def _forget(self, principal: Principal) -> None:
        self._slot_of_key.pop(principal.key_id, None)
        keys = self._keys_of_client.get(principal.client_id)
        if keys is not None:
            keys.discard(principal.key_id)
            if not keys:
                del self._keys_of_client[principal.client_id]

    def evict_key(self, key_id: str) -> None:
        """Drop a key so its next use goes to the database."""
        self._generation += 1
        slot = self._slot_of_key.get(key_id)
        if slot is not None:
            entry = self._cache.pop(slot, None)
            if entry is not None:
                self._forget(entry[0])
            self._slot_of_key.pop(key_id, None)

    def evict_client(self, client_id: str) -> None:
        """Drop every cached key of a client (tier, status or existence changed)."""
        self._generation += 1
        for key_id in list(self._keys_of_client.get(client_id, ())):
            self.evict_key(key_id)

    def evict_all(self) -> None:
        """Drop every cached key (when an eviction message could not be understood)."""
        self._generation += 1
        self._cache.clear()
        self._slot_of_key.clear()
        self._keys_of_client.clear()

    def apply(self, events: Sequence[StoredEvent]) -> None:
        """Evict whatever these committed events make stale."""
        for stored in events:
            if stored.type == ApiKeyRevoked.event_type:
                event = stored.to_event()
                assert isinstance(event, ApiKeyRevoked)
                self.evict_key(event.key_id)
            elif stored.type in _CLIENT_CHANGES and stored.client_id is not None:
                self.evict_client(stored.client_id)
