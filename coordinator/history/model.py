"""A client as of any moment: a pure fold of its events, and the changes between them.

Pure: no framework, ORM or database. Events are read from their stored data
with ``.get`` so every schema version folds (fields added later, such as a
key's ``expires_at``, are simply absent from older events).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from coordinator.history.moments import normal_time, stored_time
from eventlog.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ClientCreated,
    ClientDeleted,
    ClientPaused,
    ClientResumed,
    ClientStatus,
    CollectionCreated,
    CollectionDeleted,
    InvoiceIssued,
    PaymentFailed,
    PaymentReceived,
    TierChanged,
)

# The events that shape a client's state; everything else about it (usage, anomalies)
# is left out of the fold and of the read.
STATE_EVENT_TYPES: tuple[str, ...] = tuple(
    cls.event_type
    for cls in (
        ClientCreated,
        TierChanged,
        ClientPaused,
        ClientResumed,
        ClientDeleted,
        ApiKeyIssued,
        ApiKeyRevoked,
        CollectionCreated,
        CollectionDeleted,
        InvoiceIssued,
        PaymentReceived,
        PaymentFailed,
    )
)
FIELDS: tuple[str, ...] = ("name", "email", "tier", "status", "keys", "collections", "billing")
ChangeValue = str | list[str] | None


class StoredFact(Protocol):
    """What the fold reads of a stored event (``eventlog.store.StoredEvent`` has it)."""

    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def occurred_at(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True, slots=True)
class KeyAsOf:
    key_id: str
    scopes: tuple[str, ...]
    label: str | None
    issued_at: str
    issued_by: str
    revoked_at: str | None = None
    revoked_by: str | None = None
    expires_at: str | None = None
    allowed_cidrs: tuple[str, ...] = ()  # empty: any address (and every v1 key)


@dataclass(frozen=True, slots=True)
class CollectionAsOf:
    name: str
    dimension: int | None
    metric: str | None
    index: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class BalanceAsOf:
    """Per currency: ``balance_cents`` is invoiced minus paid (what the client owes)."""

    currency: str
    invoiced_cents: int = 0
    paid_cents: int = 0
    failed_cents: int = 0

    @property
    def balance_cents(self) -> int:
        return self.invoiced_cents - self.paid_cents


@dataclass(frozen=True, slots=True)
class ClientAsOf:
    client_id: str
    name: str
    email: str
    tier: str
    status: str
    created_at: str
    keys: tuple[KeyAsOf, ...]
    collections: tuple[CollectionAsOf, ...]
    balances: tuple[BalanceAsOf, ...]
    failed_payments: int
    event_seq: int
    event_hash: str


@dataclass(frozen=True, slots=True)
class Change:
    at: str
    field: str
    from_: ChangeValue
    to: ChangeValue
    actor: str
    reason: str | None
    event_seq: int


def _money(balance: BalanceAsOf) -> str:
    sign = "-" if balance.balance_cents < 0 else ""
    cents = abs(balance.balance_cents)
    return f"{sign}{cents // 100}.{cents % 100:02d} {balance.currency}"


@dataclass(slots=True)
class ClientFold:
    """The running fold of one client's events, in seq order."""

    client_id: str
    created: dict[str, str] = field(default_factory=dict)  # name, email, tier, created_at
    status: str = ClientStatus.ACTIVE
    keys: dict[str, KeyAsOf] = field(default_factory=dict)
    collections: dict[str, CollectionAsOf] = field(default_factory=dict)
    balances: dict[str, BalanceAsOf] = field(default_factory=dict)
    failed_payments: int = 0
    last_seq: int = 0
    last_hash: str = ""

    @property
    def exists(self) -> bool:
        return bool(self.created)

    def values(self) -> dict[str, ChangeValue]:
        """Each field of ``FIELDS`` as ``changes`` reports it (None before creation)."""
        if not self.exists:
            return dict.fromkeys(FIELDS)
        live = [k.key_id for k in self.keys.values() if k.revoked_at is None]
        owed = [_money(b) for _, b in sorted(self.balances.items())]
        return {
            "name": self.created["name"],
            "email": self.created["email"],
            "tier": self.created["tier"],
            "status": self.status,
            "keys": live,
            "collections": sorted(self.collections),
            "billing": "; ".join(owed) if owed else None,
        }

    def apply(self, ev: StoredFact) -> None:
        """Fold one event (types outside ``STATE_EVENT_TYPES`` change nothing)."""
        if ev.type not in STATE_EVENT_TYPES:
            return
        d, kind = ev.data, ev.type
        if kind == ClientCreated.event_type:
            self.created = {
                "name": str(d.get("name", "")),
                "email": str(d.get("email", "")),
                "tier": str(d.get("tier", "")),
                "created_at": ev.occurred_at,
            }
            self.status = ClientStatus.ACTIVE
        elif not self.exists:
            return  # nothing about a client folds before it existed
        elif kind == TierChanged.event_type:
            self.created["tier"] = str(d.get("to_tier", self.created["tier"]))
        elif kind == ClientPaused.event_type:
            self.status = ClientStatus.PAUSED
        elif kind == ClientResumed.event_type:
            self.status = ClientStatus.ACTIVE
        elif kind == ClientDeleted.event_type:
            self.status = ClientStatus.DELETED
        elif kind == ApiKeyIssued.event_type:
            self._issue(ev)
        elif kind == ApiKeyRevoked.event_type:
            key = self.keys.get(str(d.get("key_id")))
            if key is not None and key.revoked_at is None:
                self.keys[key.key_id] = replace(key, revoked_at=ev.occurred_at, revoked_by=ev.actor)
        elif kind == CollectionCreated.event_type:
            name = str(d.get("name"))
            self.collections[name] = CollectionAsOf(
                name, d.get("dimension"), d.get("metric"), d.get("index"), ev.occurred_at
            )
        elif kind == CollectionDeleted.event_type:
            self.collections.pop(str(d.get("name")), None)
        else:
            self._bill(kind, d)
        self.last_seq, self.last_hash = ev.seq, ev.hash

    def _issue(self, ev: StoredFact) -> None:
        d = ev.data
        key = KeyAsOf(
            key_id=str(d.get("key_id")),
            scopes=tuple(d.get("scopes") or ()),
            label=d.get("label"),
            issued_at=ev.occurred_at,
            issued_by=ev.actor,
            expires_at=d.get("expires_at"),
            allowed_cidrs=tuple(d.get("allowed_cidrs") or ()),
        )
        self.keys[key.key_id] = key

    def _bill(self, kind: str, d: dict[str, Any]) -> None:
        currency = str(d.get("currency", ""))
        amount = int(d.get("amount_cents") or 0)
        now = self.balances.get(currency, BalanceAsOf(currency))
        if kind == InvoiceIssued.event_type:
            now = replace(now, invoiced_cents=now.invoiced_cents + amount)
        elif kind == PaymentReceived.event_type:
            now = replace(now, paid_cents=now.paid_cents + amount)
        else:
            now = replace(now, failed_cents=now.failed_cents + amount)
            self.failed_payments += 1
        self.balances[currency] = now

    def state(self) -> ClientAsOf | None:
        """The client as folded so far, or None if it did not exist yet."""
        if not self.exists:
            return None
        return ClientAsOf(
            client_id=self.client_id,
            name=self.created["name"],
            email=self.created["email"],
            tier=self.created["tier"],
            status=self.status,
            created_at=self.created["created_at"],
            keys=tuple(self.keys.values()),
            collections=tuple(sorted(self.collections.values(), key=lambda c: c.name)),
            balances=tuple(b for _, b in sorted(self.balances.items())),
            failed_payments=self.failed_payments,
            event_seq=self.last_seq,
            event_hash=self.last_hash,
        )


def _until(events: Iterable[StoredFact], cut: str) -> Iterator[StoredFact]:
    return (ev for ev in events if normal_time(ev.occurred_at) <= cut)


def client_as_of(client_id: str, events: Iterable[StoredFact], at: datetime) -> ClientAsOf | None:
    """Fold the client's events (seq order) that occurred at or before ``at``."""
    fold = ClientFold(client_id)
    for ev in _until(events, stored_time(at)):
        fold.apply(ev)
    return fold.state()


def client_changes(
    client_id: str,
    events: Iterable[StoredFact],
    since: datetime | None = None,
    until: datetime | None = None,
    only: str | None = None,
) -> tuple[bool, list[Change]]:
    """(whether the client existed by ``until``, its field changes in ``[since, until]``).

    Each event is folded and the fields before and after it compared, so a change is
    reported exactly when the state ``client_as_of`` answers changes.
    """
    if only is not None and only not in FIELDS:
        raise ValueError(f"unknown field {only!r}; fields: {', '.join(FIELDS)}")
    fold = ClientFold(client_id)
    start = stored_time(since) if since is not None else ""
    found: list[Change] = []
    for ev in _until(events, stored_time(until)) if until is not None else events:
        before = fold.values()
        fold.apply(ev)
        if normal_time(ev.occurred_at) < start:
            continue  # folded for the values it leaves, reported only from ``since``
        after = fold.values()
        reason = ev.data.get("reason")
        for name in (only,) if only is not None else FIELDS:
            # Creation reports the values it sets, not the empty lists it starts.
            if before[name] != after[name] and not (before[name] is None and after[name] == []):
                found.append(
                    Change(
                        at=ev.occurred_at,
                        field=name,
                        from_=before[name],
                        to=after[name],
                        actor=ev.actor,
                        reason=reason if isinstance(reason, str) else None,
                        event_seq=ev.seq,
                    )
                )
    return fold.exists, found
