"""API key policy: expiry at issue and at every use, CIDR allowlists, last_used_at."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.client_address import client_address, trusted_proxy_networks
from api.schemas_admin import IssueKeyRequest
from coordinator.accounts import Accounts, CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.key_policy import (
    address_allowed,
    key_expiry,
    networks_of,
    parse_address,
    parse_iso_utc,
    valid_cidrs,
)
from coordinator.accounts.key_usage import KeyUseRecorder
from coordinator.accounts.memory_uow import InMemoryUnitOfWork
from coordinator.accounts.model import InvalidCommand
from coordinator.tiers import TIERS
from eventlog.events import ApiKeyIssued, decode_event
from eventlog.records import StoredEvent
from projections.fold import fold

PEPPER = b"key-policy-pepper-0123456789abcdef"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


# --- expiry at issue ---------------------------------------------------------------


def test_tiers_have_a_default_maximum_key_lifetime_except_the_top_one() -> None:
    assert TIERS["free"].max_key_lifetime_days == 90
    assert TIERS["standard"].max_key_lifetime_days == 365
    assert TIERS["premium"].max_key_lifetime_days is None


def test_omitted_expiry_is_the_tier_maximum_or_none() -> None:
    assert key_expiry("free", None, NOW) == "2030-04-01T12:00:00.000000Z"
    assert parse_iso_utc(key_expiry("standard", None, NOW) or "") == NOW + timedelta(days=365)
    assert key_expiry("premium", None, NOW) is None


def test_requested_expiry_within_the_tier_maximum_is_kept_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    asked = datetime(2030, 2, 1, 14, 30, tzinfo=plus_two)
    assert key_expiry("free", asked, NOW) == "2030-02-01T12:30:00.000000Z"
    far = datetime(2100, 1, 1, tzinfo=UTC)
    assert key_expiry("premium", far, NOW) == "2100-01-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("tier", "asked", "why"),
    [
        ("free", NOW - timedelta(seconds=1), "in the future"),
        ("premium", NOW, "in the future"),
        ("free", NOW + timedelta(days=91), "maximum key lifetime of 90 days"),
        ("standard", NOW + timedelta(days=366), "maximum key lifetime of 365 days"),
        ("free", datetime(2030, 2, 1), "timezone offset"),
    ],
)
def test_expiry_in_the_past_beyond_the_tier_or_naive_is_refused(
    tier: str, asked: datetime, why: str
) -> None:
    with pytest.raises(InvalidCommand, match=why):
        key_expiry(tier, asked, NOW)


@pytest.mark.parametrize(
    "text",
    ["2030-01-01", "2030-01-01T00:00:00", "tomorrow", "", "2030-13-01T00:00:00Z"],
)
def test_request_model_wants_rfc3339_with_an_offset(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        IssueKeyRequest.model_validate({"scopes": ["read"], "expires_at": text})


def test_request_model_parses_rfc3339_to_utc() -> None:
    body = IssueKeyRequest.model_validate(
        {"scopes": ["read"], "expires_at": "2030-01-01T02:00:00+02:00", "allowed_cidrs": []}
    )
    assert body.expiry() == datetime(2030, 1, 1, 0, 0, tzinfo=UTC)


def test_request_model_refuses_an_out_of_range_offset_date_without_crashing() -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        IssueKeyRequest.model_validate(
            {"scopes": ["read"], "expires_at": "0001-01-01T00:00:00+05:00"}
        )


# --- CIDRs ---------------------------------------------------------------------------


def test_cidrs_are_normalised_and_deduplicated() -> None:
    assert valid_cidrs(["10.0.0.0/8", " 2001:DB8::/32 ", "192.0.2.7", "10.0.0.0/8"]) == (
        "10.0.0.0/8",
        "2001:db8::/32",
        "192.0.2.7/32",
    )
    assert valid_cidrs(None) == () and valid_cidrs([]) == ()


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "300.1.1.1/32", "10.0.0.0/33", "example.com", " "])
def test_bad_cidrs_are_refused(bad: str) -> None:
    with pytest.raises(InvalidCommand, match="CIDR"):
        valid_cidrs([bad])


def test_too_many_cidrs_are_refused() -> None:
    with pytest.raises(InvalidCommand, match="at most 32"):
        valid_cidrs([f"10.0.{i}.0/24" for i in range(33)])


def test_address_allowed() -> None:
    nets = networks_of(("10.0.0.0/8", "2001:db8::/32"))
    assert address_allowed(nets, ipaddress.ip_address("10.1.2.3"))
    assert address_allowed(nets, ipaddress.ip_address("2001:db8::1"))
    assert not address_allowed(nets, ipaddress.ip_address("11.0.0.1"))
    assert not address_allowed(nets, None)  # an unknown address never passes a list
    assert address_allowed((), None)  # no list: any address
    # An IPv4 client on an IPv6 socket is matched as the IPv4 address it is.
    assert address_allowed(nets, parse_address("::ffff:10.9.9.9"))


# --- the client address --------------------------------------------------------------


def scope(peer: str, **headers: str) -> dict[str, object]:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "client": (peer, 50000), "headers": raw}


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    trusted = trusted_proxy_networks("127.0.0.1/32")
    spoofed = scope("198.51.100.9", x_real_ip="10.0.0.1", x_forwarded_for="10.0.0.1")
    assert client_address(spoofed, trusted) == ipaddress.ip_address("198.51.100.9")


def test_a_trusted_proxy_names_the_client() -> None:
    trusted = trusted_proxy_networks("127.0.0.1/32, 172.28.0.0/24")
    assert client_address(scope("172.28.0.5", x_real_ip="203.0.113.7"), trusted) == (
        ipaddress.ip_address("203.0.113.7")
    )
    # Without X-Real-IP: the right-most X-Forwarded-For entry, the one the proxy added.
    forwarded = scope("127.0.0.1", x_forwarded_for="10.0.0.1, 203.0.113.8")
    assert client_address(forwarded, trusted) == ipaddress.ip_address("203.0.113.8")
    # A header that is not an address leaves the peer.
    assert client_address(scope("127.0.0.1", x_real_ip="nonsense"), trusted) == (
        ipaddress.ip_address("127.0.0.1")
    )


def test_no_trusted_proxies_and_bad_settings() -> None:
    assert trusted_proxy_networks("") == ()
    assert client_address(scope("127.0.0.1", x_real_ip="10.0.0.1"), ()) == (
        ipaddress.ip_address("127.0.0.1")
    )
    with pytest.raises(ValueError, match="VP_TRUSTED_PROXIES"):
        trusted_proxy_networks("127.0.0.1/33")


# --- the event -----------------------------------------------------------------------


def test_v1_key_issued_events_upcast_to_no_expiry_and_no_cidrs() -> None:
    event = decode_event(
        "api_key.issued", 1, {"key_id": "0123456789abcdef", "scopes": ["read"]}, "c1"
    )
    assert isinstance(event, ApiKeyIssued)
    assert event.expires_at is None and event.allowed_cidrs == ()
    assert ApiKeyIssued.schema_version == 2


# --- expiry at use, through the key cache ----------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def issued_with_expiry(accounts: Accounts, seconds: float) -> tuple[str, str, float]:
    client = await accounts.handle(CreateClient("Acme", "ops@acme.io", "premium"))
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    issued = await accounts.handle(
        IssueApiKey(client.client_id, ("read",), expires_at=expires, allowed_cidrs=("10.0.0.0/8",))
    )
    assert issued.expires_at is not None
    return client.client_id, issued.api_key, parse_iso_utc(issued.expires_at).timestamp()


async def test_a_cached_key_stops_at_its_expiry_without_a_database_read() -> None:
    uow = InMemoryUnitOfWork()
    accounts = Accounts.with_unit_of_work(uow, PEPPER)
    _, api_key, expires_s = await issued_with_expiry(accounts, 3600)
    clock = Clock(expires_s - 1)
    accounts.key_cache.clock = clock
    principal = await accounts.authenticate(api_key)
    assert principal is not None and principal.networks == networks_of(("10.0.0.0/8",))
    reads = uow.reads
    assert await accounts.authenticate(api_key) is principal  # a cache hit
    clock.now = expires_s
    assert await accounts.authenticate(api_key) is None  # the same hit, now expired
    assert uow.reads == reads
    clock.now = expires_s + 1
    assert await accounts.authenticate(api_key) is None


async def test_an_expired_key_is_refused_on_a_cache_miss_too() -> None:
    uow = InMemoryUnitOfWork()
    accounts = Accounts.with_unit_of_work(uow, PEPPER)
    _, api_key, expires_s = await issued_with_expiry(accounts, 3600)
    fresh = Accounts.with_unit_of_work(uow, PEPPER)  # another process: nothing cached
    fresh.key_cache.clock = Clock(expires_s + 0.001)
    assert await fresh.authenticate(api_key) is None
    assert len(fresh.key_cache) == 0


async def test_expired_and_revoked_keys_are_both_just_none() -> None:
    accounts = Accounts.in_memory(PEPPER)
    client_id, api_key, expires_s = await issued_with_expiry(accounts, 3600)
    other = await accounts.handle(IssueApiKey(client_id, ("read",)))
    await accounts.handle(RevokeApiKey(client_id, other.key_id))
    accounts.key_cache.clock = Clock(expires_s)
    assert await accounts.authenticate(api_key) is None
    assert await accounts.authenticate(other.api_key) is None


# --- last_used_at --------------------------------------------------------------------


async def test_uses_are_written_at_most_once_a_minute_per_key() -> None:
    uow = InMemoryUnitOfWork()
    accounts = Accounts.with_unit_of_work(uow, PEPPER)
    client = await accounts.handle(CreateClient("Acme", "ops@acme.io"))
    issued = await accounts.handle(IssueApiKey(client.client_id, ("read",)))
    mono = Clock(1000.0)
    stamps = iter(["2030-01-01T00:00:00.000000Z", "2030-01-01T00:01:01.000000Z"])
    recorder = KeyUseRecorder(uow, clock=mono, wall_clock=lambda: next(stamps))
    accounts.key_uses = recorder
    assert await recorder.flush() == 0  # nothing noted, nothing written

    for _ in range(100):
        assert await accounts.authenticate(issued.api_key) is not None
        mono.now += 0.5  # 50 s of use
    assert recorder.pending == 1
    assert await recorder.flush() == 1
    (view,) = await accounts.list_api_keys(client.client_id)
    assert view.last_used_at == "2030-01-01T00:00:00.000000Z"

    await accounts.authenticate(issued.api_key)  # 50 s after the first: not written again
    assert recorder.pending == 0 and await recorder.flush() == 0
    mono.now += 11  # 61 s after the written use
    await accounts.authenticate(issued.api_key)
    assert await recorder.flush() == 1
    (view,) = await accounts.list_api_keys(client.client_id)
    assert view.last_used_at == "2030-01-01T00:01:01.000000Z"


async def test_a_refused_key_is_not_noted() -> None:
    accounts = Accounts.in_memory(PEPPER)
    await accounts.authenticate("vp_0123456789abcdef_" + "x" * 43)
    assert accounts.key_uses.pending == 0


# --- the audit tables ----------------------------------------------------------------


def stored_issue(version: int, data: dict[str, object]) -> StoredEvent:
    return StoredEvent(
        seq=7,
        event_id="e7",
        type="api_key.issued",
        schema_version=version,
        occurred_at="2030-01-01T00:00:00.000000Z",
        actor="admin",
        client_id="c1",
        data=data,
        prev_hash="0" * 64,
        hash="1" * 64,
    )


def test_key_history_and_audit_summary_show_expiry_and_networks() -> None:
    data = {
        "key_id": "0123456789abcdef",
        "scopes": ["read"],
        "label": None,
        "expires_at": "2030-02-01T00:00:00.000000Z",
        "allowed_cidrs": ["10.0.0.0/8"],
    }
    effects = fold(stored_issue(2, data), None)
    tables = dict(effects.rows)
    assert tables["key_history"]["expires_at"] == "2030-02-01T00:00:00.000000Z"
    assert tables["key_history"]["allowed_cidrs"] == '["10.0.0.0/8"]'
    assert "expires 2030-02-01" in tables["audit_log"]["summary"]
    assert "from 10.0.0.0/8" in tables["audit_log"]["summary"]
    # A v1 event (before expiry existed) folds to NULLs and the old summary.
    old = dict(fold(stored_issue(1, {"key_id": "0123456789abcdef", "scopes": ["read"]}), None).rows)
    assert old["key_history"]["expires_at"] is None and old["key_history"]["allowed_cidrs"] is None
    assert old["audit_log"]["summary"] == "API key 0123456789abcdef issued with scopes read"
