"""The event catalogue: every control-plane fact, typed and versioned.

Each event class has a ``event_type`` (also the bus routing key) and a
``schema_version``. Stored data of an older version is upcast on read through
``UPCASTERS``; stored rows are never rewritten. To change an event's shape:
bump its ``schema_version``, then add ``UPCASTERS[(event_type, old_version)]``
turning old data into the next version's data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Client ids become directory names on the workers, hence the tight alphabet. The one
# spelling: the accounts model and the admin API validate ids with these patterns too.
CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_]{0,63}$"
KEY_ID_PATTERN = r"^[0-9a-f]{16}$"
ClientId = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN)]


class Tier(StrEnum):
    """The service tiers, named once (their limits: ``coordinator/tiers.py``)."""

    FREE = "free"
    STANDARD = "standard"
    PREMIUM = "premium"


class ClientStatus(StrEnum):
    """Where a client's account stands, named once."""

    ACTIVE = "active"
    PAUSED = "paused"
    DELETED = "deleted"


class Scope(StrEnum):
    """What an API key may do, named once."""

    READ = "read"
    WRITE = "write"
    MANAGE = "manage"


Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    """A stored type string that the catalogue does not know."""


class UnknownEventVersion(LookupError):
    """A stored schema_version with no path to the current version."""


class Event(BaseModel):
    """Base of every event: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class ClientEvent(Event):
    """An event about one client; the store indexes it by ``client_id``."""

    client_id: ClientId


class ClientCreated(ClientEvent):
    event_type: ClassVar[str] = "client.created"
    name: str
    email: str
    tier: Tier


class ClientLoginEmailLinked(ClientEvent):
    """An admin let this email sign in to the client's dashboard (besides the contact email)."""

    event_type: ClassVar[str] = "client.login_email_linked"
    email: str


class ApiKeyIssued(ClientEvent):
    """A key was issued; the secret and its digest never enter an event.

    v2 added ``expires_at`` (RFC 3339 UTC; None: never) and ``allowed_cidrs`` (empty:
    any address); v1 keys had neither.
    """

    event_type: ClassVar[str] = "api_key.issued"
    schema_version: ClassVar[int] = 2
    key_id: KeyId
    scopes: tuple[Scope, ...]
    label: str | None = None
    expires_at: str | None = None
    allowed_cidrs: tuple[str, ...] = ()


class ApiKeyRevoked(ClientEvent):
    event_type: ClassVar[str] = "api_key.revoked"
    key_id: KeyId


class TierChanged(ClientEvent):
    """v2 added ``reason`` (v1 changes carried none)."""

    event_type: ClassVar[str] = "client.tier_changed"
    schema_version: ClassVar[int] = 2
    from_tier: Tier
    to_tier: Tier
    reason: str | None = None


class ClientPaused(ClientEvent):
    """v2 added ``automatic`` (v1 pauses were all made by hand)."""

    event_type: ClassVar[str] = "client.paused"
    schema_version: ClassVar[int] = 2
    reason: str
    automatic: bool = False


class ClientResumed(ClientEvent):
    """v2 added ``reason`` (required of operators since; v1 resumes carried none)."""

    event_type: ClassVar[str] = "client.resumed"
    schema_version: ClassVar[int] = 2
    reason: str | None = None


class RemovedFile(BaseModel):
    """One file removed with a client or collection: its path and the SHA-256 of its bytes.

    ``path`` is relative to the data directory (``hot/<client>/...``, ``cold/<client>/...``);
    the bytes hashed are the ciphertext as stored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(max_length=1000)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DeletionReceipt(BaseModel):
    """What a client's deletion destroyed: its data keys and the files removed after.

    ``data_key_ids`` name the wrapped data keys destroyed in the same transaction as
    the event (from then on no key that exists opens the files); ``files`` lists every
    file of the client found just before that commit, hashed; ``chain_head_*`` is the
    event log's head before this event, so the receipt pins the history it follows.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_key_ids: tuple[str, ...]
    files: tuple[RemovedFile, ...]
    files_hashed_at: str
    chain_head_seq: int = Field(ge=0)
    chain_head_hash: str


class ClientDeleted(ClientEvent):
    """v2 added ``reason`` (required of operators since; v1 deletions carried none).

    v3 added ``receipt`` (crypto-shredding; deletions before it carried none).
    """

    event_type: ClassVar[str] = "client.deleted"
    schema_version: ClassVar[int] = 3
    reason: str | None = None
    receipt: DeletionReceipt | None = None


class ClientDataKeyRotated(ClientEvent):
    """The client's data was re-encrypted under a new data key; ``previous_key_ids`` retired.

    Recorded when the re-encryption has finished (requested by an operator or not). A
    retired key is kept, wrapped, for backups taken before; it is destroyed with the
    client (``client.deleted``'s receipt names every destroyed key).
    """

    event_type: ClassVar[str] = "client.data_key_rotated"
    key_id: str
    key_version: int = Field(ge=1)
    previous_key_ids: tuple[str, ...]
    reason: str | None = None


class CollectionCreated(ClientEvent):
    event_type: ClassVar[str] = "collection.created"
    name: str
    dimension: int = Field(ge=1)
    metric: Literal["cosine", "l2", "ip"]
    index: Literal["flat", "hnsw"]


class CollectionDeleted(ClientEvent):
    """v2 added ``files``: the removed files with the SHA-256 of each (v1 carried none)."""

    event_type: ClassVar[str] = "collection.deleted"
    schema_version: ClassVar[int] = 2
    name: str
    files: tuple[RemovedFile, ...] = ()


class InvoiceIssued(ClientEvent):
    """v2 added ``reason``: why the entry was recorded (v1 entries carried none)."""

    event_type: ClassVar[str] = "billing.invoice_issued"
    schema_version: ClassVar[int] = 2
    amount_cents: int = Field(ge=0)
    currency: Currency
    reference: str
    reason: str | None = None


class PaymentReceived(ClientEvent):
    """v2 added ``reason``: why the entry was recorded (v1 entries carried none)."""

    event_type: ClassVar[str] = "billing.payment_received"
    schema_version: ClassVar[int] = 2
    amount_cents: int = Field(ge=0)
    currency: Currency
    reference: str
    reason: str | None = None


class PaymentFailed(ClientEvent):
    event_type: ClassVar[str] = "billing.payment_failed"
    amount_cents: int = Field(ge=0)
    currency: Currency
    reference: str
    reason: str | None = None


class UsageRecorded(ClientEvent):
    """v2 added ``rejected`` (data-plane requests refused: 4xx/5xx, 423 while paused)."""

    event_type: ClassVar[str] = "usage.recorded"
    schema_version: ClassVar[int] = 2
    period_start: str
    period_end: str
    requests: int = Field(ge=0)
    queries: int = Field(ge=0)
    vectors_upserted: int = Field(ge=0)
    vectors_stored: int = Field(ge=0)
    bytes_stored: int = Field(ge=0)
    rejected: int = Field(default=0, ge=0)


class BillingAnomalyDetected(ClientEvent):
    event_type: ClassVar[str] = "billing.anomaly_detected"
    metric: str
    observed: float
    baseline: float
    window_hours: int = Field(ge=1)


class CensusSnapshotTaken(Event):
    """Fleet-wide, so it concerns no single client.

    v2 added ``date`` (the UTC day the census describes), ``totals`` (fleet sums) and
    ``head_hash`` / ``head_seq`` (the event log's head when the census was taken, tying
    the archive to the log). ``archive`` is the path of the ``.jsonl.gz`` file.
    """

    event_type: ClassVar[str] = "census.snapshot_taken"
    schema_version: ClassVar[int] = 2
    archive: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    clients: int = Field(ge=0)
    date: str = ""
    totals: dict[str, int] = Field(default_factory=dict)
    head_seq: int = Field(default=0, ge=0)
    head_hash: str = ""


class StorageFloorReached(Event):
    """A worker's store fell below its free-space floor: writes there are refused (507).

    Recorded once per crossing, for the operations email; it concerns no client.
    """

    event_type: ClassVar[str] = "worker.storage_low"
    worker_id: str = Field(min_length=1, max_length=200)
    store: Literal["hot", "cold"]
    free_bytes: int = Field(ge=0)
    total_bytes: int = Field(ge=0)
    min_free_bytes: int = Field(ge=0)


class AuditCheckpointRecorded(Event):
    """An audit verify found the log and the audit tables sound through ``verified_seq``.

    Fleet-wide. ``audit verify --since-checkpoint`` starts after the newest one:
    it checks that the event at ``verified_seq`` still has ``verified_hash`` and
    walks only what came after. ``mode`` says whether the verify that recorded
    it was full or itself incremental.
    """

    event_type: ClassVar[str] = "audit.checkpoint_recorded"
    verified_seq: int = Field(ge=1)
    verified_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    verified_at: str
    tool_version: str
    mode: Literal["full", "incremental"] = "full"


BackupId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
BackupKind = Literal["backup", "snapshot"]


class BackupTaken(ClientEvent):
    """A complete backup (or a client's one-collection snapshot) is in the backup store.

    ``head_seq`` is the event log's head signed into its manifest when it was taken.
    """

    event_type: ClassVar[str] = "backup.taken"
    backup_id: BackupId
    kind: BackupKind = "backup"
    collections: tuple[str, ...] = ()
    vectors: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    head_seq: int = Field(default=0, ge=0)
    location: Literal["hot", "cold"] = "hot"


class BackupFailed(ClientEvent):
    """A backup could not be taken; nothing of it is listed. Operations get an email."""

    event_type: ClassVar[str] = "backup.failed"
    backup_id: BackupId
    kind: BackupKind = "backup"
    reason: str = Field(max_length=500)


class BackupPruned(ClientEvent):
    """Retention removed a backup from the store."""

    event_type: ClassVar[str] = "backup.pruned"
    backup_id: BackupId
    reason: str = Field(max_length=500)


class BackupRestored(ClientEvent):
    """Collections were restored from a backup: ``collections[i]`` became ``into[i]``."""

    event_type: ClassVar[str] = "backup.restored"
    backup_id: BackupId
    restore_id: str = Field(min_length=1, max_length=80)
    collections: tuple[str, ...]
    into: tuple[str, ...]
    vectors: int = Field(default=0, ge=0)


class RestoreDrillCompleted(Event):
    """The restore drill restored each client's newest backup into a scratch directory.

    Fleet-wide. ``ok`` is false when any backup failed its checksums or counts;
    ``failures`` names them. Operations get an email either way.
    """

    event_type: ClassVar[str] = "backup.drill_completed"
    ok: bool
    clients: int = Field(ge=0)
    backups: int = Field(ge=0)
    bytes: int = Field(ge=0)
    failures: tuple[str, ...] = ()


OperatorName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
OperatorId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class OperatorIssued(Event):
    """A named admin identity got its own token; the token and its digest never enter an event.

    Fleet-wide: it concerns no client. Admin actions taken with the token are
    recorded with the actor ``operator:<name>``.
    """

    event_type: ClassVar[str] = "operator.issued"
    operator_id: OperatorId
    name: OperatorName
    email: str


class OperatorRevoked(Event):
    """An operator's token stopped working; the name is never given to anyone else."""

    event_type: ClassVar[str] = "operator.revoked"
    operator_id: OperatorId
    name: OperatorName
    reason: str | None = None


CATALOGUE: tuple[type[Event], ...] = (
    ClientCreated,
    ApiKeyIssued,
    ApiKeyRevoked,
    TierChanged,
    ClientPaused,
    ClientResumed,
    ClientDeleted,
    CollectionCreated,
    CollectionDeleted,
    InvoiceIssued,
    PaymentReceived,
    PaymentFailed,
    UsageRecorded,
    BillingAnomalyDetected,
    CensusSnapshotTaken,
    ClientLoginEmailLinked,
    StorageFloorReached,
    AuditCheckpointRecorded,
    OperatorIssued,
    OperatorRevoked,
    BackupTaken,
    BackupFailed,
    BackupPruned,
    BackupRestored,
    RestoreDrillCompleted,
    ClientDataKeyRotated,
)

EVENT_TYPES: dict[str, type[Event]] = {cls.event_type: cls for cls in CATALOGUE}


def _client_paused_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "automatic": False}


def _tier_changed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "reason": None}


def _reason_none(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "reason": None}


def _api_key_issued_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "expires_at": None, "allowed_cidrs": []}


def _receipt_none(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "receipt": None}


def _no_files(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "files": []}


def _usage_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "rejected": 0}


def _census_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "date": "", "totals": {}, "head_seq": 0, "head_hash": ""}


# (event_type, stored schema_version) -> function producing the next version's data.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    (ClientPaused.event_type, 1): _client_paused_v1_to_v2,
    (TierChanged.event_type, 1): _tier_changed_v1_to_v2,
    (CensusSnapshotTaken.event_type, 1): _census_v1_to_v2,
    (UsageRecorded.event_type, 1): _usage_v1_to_v2,
    (ApiKeyIssued.event_type, 1): _api_key_issued_v1_to_v2,
    (ClientResumed.event_type, 1): _reason_none,
    (ClientDeleted.event_type, 1): _reason_none,
    (ClientDeleted.event_type, 2): _receipt_none,
    (CollectionDeleted.event_type, 1): _no_files,
    (InvoiceIssued.event_type, 1): _reason_none,
    (PaymentReceived.event_type, 1): _reason_none,
}


def client_id_of(event: Event) -> str | None:
    """The client an event concerns, or None for fleet-wide events."""
    return event.client_id if isinstance(event, ClientEvent) else None


def encode_event(event: Event) -> dict[str, Any]:
    """The event's data as stored: JSON-ready, without ``client_id`` (a column of its own)."""
    return event.model_dump(mode="json", exclude={"client_id"})


def decode_event(
    event_type: str,
    schema_version: int,
    data: Mapping[str, Any],
    client_id: str | None,
    *,
    catalogue: Mapping[str, type[Event]] = EVENT_TYPES,
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> Event:
    """Rebuild a typed event from stored fields, upcasting old versions step by step."""
    cls = catalogue.get(event_type)
    if cls is None:
        raise UnknownEventType(event_type)
    current = dict(data)
    version = schema_version
    while version < cls.schema_version:
        step = upcasters.get((event_type, version))
        if step is None:
            raise UnknownEventVersion(f"{event_type} v{version} has no upcaster")
        current = step(current)
        version += 1
    if version != cls.schema_version:
        raise UnknownEventVersion(f"{event_type} v{version} is newer than this code")
    if issubclass(cls, ClientEvent):
        current["client_id"] = client_id
    return cls.model_validate(current)
