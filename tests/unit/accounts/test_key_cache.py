"""KeyCache: the data plane's key check, hits, misses, eviction and refusals."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coordinator.accounts import Accounts, CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.memory_uow import InMemoryUnitOfWork
from coordinator.accounts.model import ClientStatus
from coordinator.accounts.views import IssuedApiKey
from eventlog.events import ClientPaused
from eventlog.memory_store import InMemoryEventStore

PEPPER = b"key-cache-pepper-0123456789abcdef"


def make(cache_size: int = 100) -> tuple[Accounts, InMemoryUnitOfWork]:
    uow = InMemoryUnitOfWork()
    return Accounts.with_unit_of_work(uow, PEPPER, cache_size), uow


async def client_with_key(
    accounts: Accounts, scopes: tuple[str, ...] = ("read",)
) -> tuple[str, IssuedApiKey]:
    client = await accounts.handle(CreateClient("Acme", "ops@acme.io", "premium"))
    return client.client_id, await accounts.handle(IssueApiKey(client.client_id, scopes))


async def test_miss_reads_once_then_hits_without_the_database() -> None:
    accounts, uow = make()
    client_id, issued = await client_with_key(accounts, ("read", "write"))
    before = uow.reads
    first = await accounts.authenticate(issued.api_key)
    assert uow.reads == before + 1
    assert first is not None and first.client_id == client_id and first.key_id == issued.key_id
    assert first.scopes == frozenset({"read", "write"}) and first.tier == "premium"
    assert first.status == "active"
    for _ in range(5):
        assert await accounts.authenticate(issued.api_key) == first
    assert uow.reads == before + 1
    assert len(accounts.key_cache) == 1


@pytest.mark.parametrize(
    "presented",
    ["", "Bearer x", "vp_", "vp_0123456789abcdef_tooshort", "vp_XYZ_" + "a" * 43, "a" * 10_000],
)
async def test_malformed_keys_are_refused_without_a_database_read(presented: str) -> None:
    accounts, uow = make()
    await client_with_key(accounts)
    before = uow.reads
    assert await accounts.authenticate(presented) is None
    assert uow.reads == before


async def test_malformed_variants_of_a_real_key_are_refused() -> None:
    accounts, uow = make()
    _, issued = await client_with_key(accounts)
    before = uow.reads
    for variant in (issued.api_key + " ", " " + issued.api_key, issued.api_key.upper()):
        assert await accounts.authenticate(variant) is None
    assert uow.reads == before


async def test_wrong_secret_with_right_key_id_is_refused_and_not_cached() -> None:
    accounts, _ = make()
    _, issued = await client_with_key(accounts)
    forged = f"vp_{issued.key_id}_" + "A" * 43
    assert await accounts.authenticate(forged) is None
    assert len(accounts.key_cache) == 0
    assert await accounts.authenticate(issued.api_key) is not None
    assert await accounts.authenticate(forged) is None  # still refused with the real key cached


async def test_a_cache_slot_collision_is_not_proof(monkeypatch: pytest.MonkeyPatch) -> None:
    accounts, _ = make()
    _, issued = await client_with_key(accounts)
    # Every key lands in the same slot: only the digest compare can tell them apart.
    monkeypatch.setattr(accounts.key_cache, "_slot", lambda presented: 42)
    assert await accounts.authenticate(issued.api_key) is not None
    assert await accounts.authenticate(f"vp_{issued.key_id}_" + "B" * 43) is None


async def test_a_hit_is_proven_by_a_per_process_keyed_digest_not_the_key() -> None:
    first, _ = make()
    second, _ = make()
    _, issued = await client_with_key(first)
    assert await first.authenticate(issued.api_key) is not None
    [(principal, proof)] = list(first.key_cache._cache.values())
    assert principal.key_id == issued.key_id
    assert len(proof) == 64 and issued.api_key.encode() not in proof
    assert proof != principal.digest.encode() and proof.hex() != principal.digest
    # The proof's key is the process's own: the same key string proves nothing elsewhere.
    assert first.key_cache._proof(issued.api_key) != second.key_cache._proof(issued.api_key)
    assert first.key_cache._proof(issued.api_key) == proof


async def test_a_refused_key_in_the_same_slot_does_not_refuse_the_real_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts, _ = make()
    _, issued = await client_with_key(accounts)
    monkeypatch.setattr(accounts.key_cache, "_slot", lambda presented: 42)
    assert await accounts.authenticate(f"vp_{issued.key_id}_" + "B" * 43) is None
    assert await accounts.authenticate(issued.api_key) is not None


async def test_unknown_key_is_refused() -> None:
    accounts, _ = make()
    await client_with_key(accounts)
    assert await accounts.authenticate("vp_0123456789abcdef_" + "a" * 43) is None


async def test_revoked_key_is_refused_immediately() -> None:
    accounts, uow = make()
    client_id, issued = await client_with_key(accounts)
    _, other = client_id, await accounts.handle(IssueApiKey(client_id, ("read",)))
    assert await accounts.authenticate(issued.api_key) is not None
    assert await accounts.authenticate(other.api_key) is not None
    await accounts.handle(RevokeApiKey(client_id, issued.key_id))
    assert await accounts.authenticate(issued.api_key) is None
    before = uow.reads
    assert await accounts.authenticate(other.api_key) is not None  # the sibling stays cached
    assert uow.reads == before


async def test_cache_is_bounded_and_evicted_keys_still_work() -> None:
    accounts, uow = make(cache_size=3)
    client_id, first = await client_with_key(accounts)
    keys = [first] + [await accounts.handle(IssueApiKey(client_id, ("read",))) for _ in range(5)]
    for key in keys:
        assert await accounts.authenticate(key.api_key) is not None
        assert len(accounts.key_cache) <= 3
    assert len(accounts.key_cache) == 3
    before = uow.reads
    assert await accounts.authenticate(keys[0].api_key) is not None  # LRU-evicted: read again
    assert uow.reads == before + 1
    # Revoking a key that the LRU already dropped still refuses it.
    await accounts.handle(RevokeApiKey(client_id, keys[1].key_id))
    assert await accounts.authenticate(keys[1].api_key) is None


async def test_client_events_evict_all_of_the_clients_keys() -> None:
    accounts, uow = make()
    client_id, issued = await client_with_key(accounts)
    assert (await accounts.authenticate(issued.api_key)).status == "active"  # type: ignore[union-attr]
    uow.clients[client_id] = replace(uow.clients[client_id], status=ClientStatus.PAUSED)
    log = InMemoryEventStore()
    accounts.key_cache.apply(
        log.append([ClientPaused(client_id=client_id, reason="unpaid")], "scheduler")
    )
    assert len(accounts.key_cache) == 0
    assert (await accounts.authenticate(issued.api_key)).status == "paused"  # type: ignore[union-attr]
    uow.clients[client_id] = replace(uow.clients[client_id], status=ClientStatus.DELETED)
    accounts.key_cache.evict_client(client_id)
    assert await accounts.authenticate(issued.api_key) is None


async def test_a_miss_racing_a_revocation_does_not_refill_the_cache() -> None:
    accounts, uow = make()
    client_id, issued = await client_with_key(accounts)
    gate = asyncio.Event()
    real_read = uow.read

    async def slow_read(body: Any) -> Any:
        result = await real_read(body)
        await gate.wait()
        return result

    uow.read = slow_read  # type: ignore[method-assign]
    pending = asyncio.create_task(accounts.authenticate(issued.api_key))
    await asyncio.sleep(0.05)
    uow.read = real_read  # type: ignore[method-assign]
    await accounts.handle(RevokeApiKey(client_id, issued.key_id))
    gate.set()
    await pending
    assert len(accounts.key_cache) == 0
    assert await accounts.authenticate(issued.api_key) is None


def test_pepper_must_be_long_enough(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Accounts.with_unit_of_work(InMemoryUnitOfWork(), b"short", 10)
    with pytest.raises(ValueError):
        Accounts(tmp_path / "control.sqlite3", b"short", 10)
    assert not (tmp_path / "control.sqlite3").exists()


async def test_a_refused_key_costs_one_database_read_however_often_it_is_presented() -> None:
    accounts, uow = make()
    client_id, issued = await client_with_key(accounts)
    wrong_secret = issued.api_key[:-4] + ("aaaa" if not issued.api_key.endswith("aaaa") else "bbbb")
    unknown_id = "vp_0123456789abcdef_" + "A" * 43
    for presented in (wrong_secret, unknown_id):
        before = uow.reads
        for _ in range(50):
            assert await accounts.authenticate(presented) is None
        assert uow.reads == before + 1
    # The real key still works, and a revoked one is refused from then on.
    assert await accounts.authenticate(issued.api_key) is not None
    await accounts.handle(RevokeApiKey(client_id, issued.key_id))
    assert await accounts.authenticate(issued.api_key) is None
    assert await accounts.authenticate(issued.api_key) is None
