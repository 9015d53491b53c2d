"""Account commands: what an actor asks the control plane to do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventlog.events import Tier


@dataclass(frozen=True, slots=True)
class CreateClient:
    name: str
    email: str
    tier: str = Tier.FREE
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class LinkLoginEmail:
    """Let ``email`` sign in to the client's dashboard, besides its contact email."""

    client_id: str
    email: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class IssueApiKey:
    client_id: str
    scopes: tuple[str, ...]
    label: str | None = None
    actor: str = "admin"
    # None: the tier's maximum key lifetime, if it has one (coordinator/tiers.py).
    expires_at: datetime | None = None
    # Networks the key may be used from; empty: any address.
    allowed_cidrs: tuple[str, ...] = ()


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
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecordBilling:
    """Record an invoice, a payment or a failed payment (``kind`` as in the admin API)."""

    client_id: str
    kind: str
    amount_cents: int
    currency: str
    reference: str
    actor: str = "admin"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteClient:
    """Delete a client; its data keys are destroyed in the same commit (crypto-shredding).

    ``files`` are the client's files (``{path, sha256}``) hashed just before, at
    ``files_hashed_at``; they go into the deletion receipt of the ``client.deleted`` event.
    """

    client_id: str
    actor: str = "admin"
    reason: str | None = None
    files: tuple[tuple[str, str], ...] = ()
    files_hashed_at: str | None = None


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
    files: tuple[tuple[str, str], ...] = ()  # (path, sha256) of each removed file


@dataclass(frozen=True, slots=True)
class PauseClient:
    """Pause a client: data-plane requests get 423 and its files go to cold storage."""

    client_id: str
    reason: str
    actor: str = "admin"
    automatic: bool = False


@dataclass(frozen=True, slots=True)
class ResumeClient:
    client_id: str
    actor: str = "admin"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class IssueOperator:
    """Give a person their own admin token (shown once) under a unique name."""

    name: str
    email: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class RevokeOperator:
    operator_id: str
    actor: str = "admin"
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RecordUsage:
    """One metering period of one client, as counted by the coordinator."""

    client_id: str
    period_start: str
    period_end: str
    requests: int
    queries: int
    vectors_upserted: int
    vectors_stored: int
    bytes_stored: int
    rejected: int = 0
    actor: str = "coordinator"


@dataclass(frozen=True, slots=True)
class RecordCensus:
    """A census archive written for ``date``; a second one for the same date is a no-op."""

    date: str
    archive: str
    sha256: str
    clients: int
    totals: dict[str, int]
    head_seq: int
    head_hash: str
    actor: str = "admin"


@dataclass(frozen=True, slots=True)
class FlagBillingAnomaly:
    client_id: str
    metric: str
    observed: float
    baseline: float
    window_hours: int
    actor: str = "scheduler"


@dataclass(frozen=True, slots=True)
class RecordStorageLow:
    """A worker store crossed below its free-space floor (for the operations email)."""

    worker_id: str
    store: str
    free_bytes: int
    total_bytes: int
    min_free_bytes: int
    actor: str = "coordinator"


@dataclass(frozen=True, slots=True)
class RecordBackupActivity:
    """A backup, snapshot, prune, restore or restore drill happened (``event`` says which)."""

    event: Any
    actor: str = "coordinator"


Command = (
    CreateClient
    | IssueApiKey
    | RevokeApiKey
    | LinkLoginEmail
    | ChangeTier
    | RecordBilling
    | DeleteClient
    | RecordCollectionCreated
    | RecordCollectionDeleted
    | PauseClient
    | ResumeClient
    | RecordUsage
    | RecordCensus
    | FlagBillingAnomaly
    | RecordStorageLow
    | IssueOperator
    | RevokeOperator
    | RecordBackupActivity
)
