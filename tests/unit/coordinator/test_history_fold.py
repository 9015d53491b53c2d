"""The history fold: a client as of a moment, and the changes between events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coordinator.history.model import FIELDS, client_as_of, client_changes
from coordinator.history.moments import parse_moment, read_bound, stored_time
from eventlog.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ClientCreated,
    ClientDeleted,
    ClientPaused,
    ClientResumed,
    CollectionCreated,
    CollectionDeleted,
    Event,
    InvoiceIssued,
    PaymentFailed,
    PaymentReceived,
    TierChanged,
    UsageRecorded,
)
from eventlog.memory_store import InMemoryEventStore
from eventlog.records import StoredEvent

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CID = "acme"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def log(*steps: tuple[float, Event, str]) -> list[StoredEvent]:
    store = InMemoryEventStore()
    for when, event, actor in steps:
        store.append([event], actor, stored_time(day(when)))
    return list(store.client_events(CID, "9999"))


@pytest.fixture
def story() -> list[StoredEvent]:
    return log(
        (0, ClientCreated(client_id=CID, name="Acme", email="ops@acme.test", tier="free"), "admin"),
        (1, ApiKeyIssued(client_id=CID, key_id="a" * 16, scopes=("read",), label="ci"), "admin"),
        (2, CollectionCreated(client_id=CID, name="docs", dimension=4, metric="l2", index="flat"),
         "key:" + "a" * 16),
        (3, TierChanged(client_id=CID, from_tier="free", to_tier="premium", reason="contract"),
         "operator:alice"),
        (4, InvoiceIssued(client_id=CID, amount_cents=12_000, currency="EUR", reference="I1"),
         "billing"),
        (5, PaymentFailed(client_id=CID, amount_cents=12_000, currency="EUR", reference="P1",
                          reason="card declined"), "billing"),
        (6, ClientPaused(client_id=CID, reason="unpaid"), "operator:bob"),
        (7, UsageRecorded(client_id=CID, period_start="a", period_end="b", requests=1, queries=1,
                          vectors_upserted=0, vectors_stored=0, bytes_stored=0), "meter"),
        (8, PaymentReceived(client_id=CID, amount_cents=9_000, currency="EUR", reference="P2"),
         "billing"),
        (9, ClientResumed(client_id=CID, reason="paid"), "operator:bob"),
        (10, ApiKeyRevoked(client_id=CID, key_id="a" * 16), "admin"),
        (11, CollectionDeleted(client_id=CID, name="docs"), "key:" + "a" * 16),
        (12, ClientDeleted(client_id=CID, reason="left"), "admin"),
    )  # fmt: skip


def test_before_the_client_existed_there_is_nothing(story: list[StoredEvent]) -> None:
    assert client_as_of(CID, story, day(-1)) is None
    assert client_as_of(CID, story, day(0) - timedelta(microseconds=1)) is None
    assert client_as_of(CID, story, day(0)) is not None  # the creation moment itself counts


def test_each_moment_folds_exactly_the_events_up_to_it(story: list[StoredEvent]) -> None:
    created = client_as_of(CID, story, day(0.5))
    assert created is not None
    assert (created.name, created.email, created.tier, created.status) == (
        "Acme", "ops@acme.test", "free", "active",
    )  # fmt: skip
    assert created.keys == () and created.collections == () and created.balances == ()
    assert (created.event_seq, created.event_hash) == (story[0].seq, story[0].hash)

    paused = client_as_of(CID, story, day(6.5))
    assert paused is not None
    assert (paused.tier, paused.status, paused.failed_payments) == ("premium", "paused", 1)
    (key,) = paused.keys
    assert (key.key_id, key.scopes, key.label, key.revoked_at) == ("a" * 16, ("read",), "ci", None)
    assert key.issued_at == stored_time(day(1)) and key.issued_by == "admin"
    assert key.expires_at is None and key.allowed_cidrs == ()
    assert [(c.name, c.dimension, c.metric, c.index) for c in paused.collections] == [
        ("docs", 4, "l2", "flat")
    ]
    (eur,) = paused.balances
    assert (eur.currency, eur.invoiced_cents, eur.paid_cents, eur.balance_cents) == (
        "EUR", 12_000, 0, 12_000,
    )  # fmt: skip
    assert eur.failed_cents == 12_000

    # Usage is not state: the last event folded by day 7.5 is still the pause.
    later = client_as_of(CID, story, day(7.5))
    assert later is not None and later.event_seq == paused.event_seq == story[6].seq

    paid = client_as_of(CID, story, day(9.5))
    assert paid is not None and paid.status == "active"
    assert paid.balances[0].balance_cents == 3_000

    gone = client_as_of(CID, story, day(30))
    assert gone is not None
    assert gone.status == "deleted" and gone.collections == ()
    (revoked,) = gone.keys
    assert revoked.revoked_at == stored_time(day(10)) and revoked.revoked_by == "admin"
    assert (gone.event_seq, gone.event_hash) == (story[-1].seq, story[-1].hash)


def test_fields_added_to_an_event_later_are_read_when_present() -> None:
    issued: dict[str, Any] = {
        "key_id": "b" * 16,
        "scopes": ["read", "write"],
        "label": None,
        "expires_at": "2027-01-01T00:00:00Z",
        "allowed_cidrs": ["10.0.0.0/8"],
    }
    events = [
        StoredEvent(1, "e1", "client.created", 1, stored_time(day(0)), "admin", CID,
                    {"name": "A", "email": "a@x.test", "tier": "free"}, "0" * 64, "1" * 64),
        StoredEvent(2, "e2", "api_key.issued", 2, stored_time(day(1)), "admin", CID, issued,
                    "1" * 64, "2" * 64),
        StoredEvent(3, "e3", "client.renamed_in_a_future_version", 1, stored_time(day(2)),
                    "admin", CID, {"name": "B"}, "2" * 64, "3" * 64),
    ]  # fmt: skip
    state = client_as_of(CID, events, day(3))
    assert state is not None and state.name == "A" and state.event_seq == 2
    (key,) = state.keys
    assert key.expires_at == "2027-01-01T00:00:00Z" and key.allowed_cidrs == ("10.0.0.0/8",)


def test_changes_name_who_changed_what_and_why(story: list[StoredEvent]) -> None:
    existed, changes = client_changes(CID, story, only="tier")
    assert existed
    assert [(c.from_, c.to, c.actor, c.reason) for c in changes] == [
        (None, "free", "admin", None),
        ("free", "premium", "operator:alice", "contract"),
    ]
    _, status = client_changes(CID, story, since=day(1), only="status")
    assert [(c.from_, c.to, c.actor, c.reason) for c in status] == [
        ("active", "paused", "operator:bob", "unpaid"),
        ("paused", "active", "operator:bob", "paid"),
        ("active", "deleted", "admin", "left"),
    ]
    _, window = client_changes(CID, story, since=day(2), until=day(4))
    assert [(c.field, c.from_, c.to) for c in window] == [
        ("collections", [], ["docs"]),
        ("tier", "free", "premium"),
        ("billing", None, "120.00 EUR"),
    ]
    assert window[0].event_seq == story[2].seq and window[0].at == stored_time(day(2))
    _, keys = client_changes(CID, story, only="keys")
    assert [(c.from_, c.to) for c in keys] == [([], ["a" * 16]), (["a" * 16], [])]


def test_changes_before_the_client_existed_say_so(story: list[StoredEvent]) -> None:
    assert client_changes(CID, story, until=day(-1)) == (False, [])
    with pytest.raises(ValueError, match="unknown field"):
        client_changes(CID, story, only="colour")
    assert set(FIELDS) == {"name", "email", "tier", "status", "keys", "collections", "billing"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-03T12:00:00Z", datetime(2026, 3, 3, 12, tzinfo=UTC)),
        ("2026-03-03t12:00:00.5z", datetime(2026, 3, 3, 12, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-03-03T14:00:00+02:00", datetime(2026, 3, 3, 12, tzinfo=UTC)),
        ("2026-03-03T12:00:00.123456789Z", datetime(2026, 3, 3, 12, 0, 0, 123_456, tzinfo=UTC)),
    ],
)
def test_rfc3339_moments_parse_to_utc(text: str, expected: datetime) -> None:
    assert parse_moment(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-03",
        "2026-03-03T12:00:00",
        "yesterday",
        "2026-13-03T12:00:00Z",
        "2026-02-30T12:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "",
        "1" * 100,
    ],
)
def test_ambiguous_or_malformed_moments_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_moment(text)


def test_the_read_bound_covers_times_stored_without_microseconds() -> None:
    moment = datetime(2026, 3, 3, 12, tzinfo=UTC)
    assert read_bound(moment) >= "2026-03-03T12:00:00Z"
    assert read_bound(parse_moment("9999-12-31T23:59:59.999999Z")) >= "9999-12-31T23:59:59Z"
    events = log((0, ClientCreated(client_id=CID, name="A", email="a@x.test", tier="free"),
                  "admin"))  # fmt: skip
    short = replace(events[0], occurred_at="2026-03-01T00:00:00Z")
    assert client_as_of(CID, [short], day(0)) is not None
    assert client_as_of(CID, [short], day(0) - timedelta(microseconds=1)) is None
