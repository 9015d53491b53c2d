"""Account commands: what an actor asks the control plane to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CreateClient:
    name: str
    email: str
    tier: str = "free"
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class IssueApiKey:
    client_id: str
    scopes: tuple[str, ...]
    label: str | None = None
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class RevokeApiKey:
    client_id: str
    key_id: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class ChangeTier:
    client_id: str
    tier: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class RecordBilling:
    """Record an invoice, a payment or a failed payment (``kind`` as in the admin API)."""

    client_id: str
    kind: str
    amount_cents: int
    currency: str
    reference: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class DeleteClient:
    client_id: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class RecordCollectionCreated:
    """A worker confirmed it created a collection; the actor is the key that asked."""

    client_id: str
    name: str
    dimension: int
    metric: str
    index: str
    actor: str


@dataclass(frozen=True, slots=True)
class RecordCollectionDeleted:
    client_id: str
    name: str
    actor: str


Command = (
    CreateClient
    | IssueApiKey
    | RevokeApiKey
    | ChangeTier
    | RecordBilling
    | DeleteClient
    | RecordCollectionCreated
    | RecordCollectionDeleted
)
