"""Request and response models of the admin plane (``/admin/v1``), as in shared/API.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict
from pydantic.dataclasses import dataclass as pydantic_dataclass

from eventlog.events import ClientCreated, ClientStatus, Scope, Tier
from eventlog.records import StoredEvent

EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"

_CLIENT_EXAMPLE: JsonDict = {
    "client_id": "c3f2a9c0d1e4b5a67",
    "name": "Acme Robotics",
    "email": "ops@acme.example",
    "tier": "standard",
    "status": "active",
    "created_at": "2025-01-31T09:15:02.123456Z",
}


# A tier or scope as JSON names it: the string only (strict models otherwise want an
# enum instance).
TierIn = Annotated[Tier, Field(strict=False)]
ScopeIn = Annotated[Scope, Field(strict=False)]


class AdminRequest(BaseModel):
    """Unknown fields are rejected and no value is coerced (422 invalid)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CreateClientRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Acme Robotics", "email": "ops@acme.example", "tier": "standard"}]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    tier: TierIn = Tier.FREE

    @field_validator("email")
    @classmethod
    def _deliverable(cls, email: str) -> str:
        """Internationalised addresses are fine (IDNA domain, SMTPUTF8 local part), as long
        as an email can actually be addressed to them; otherwise 422 now, not a dead email."""
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in email):
            raise ValueError("the email address contains control characters")
        domain = email.rpartition("@")[2]
        try:
            domain.encode("idna")
        except UnicodeError:
            raise ValueError(
                f"the email domain '{domain[:100]}' cannot be written in IDNA form "
                "(each label 1-63 characters, no forbidden characters), so no email could "
                "ever be sent to it"
            ) from None
        return email


class IssueKeyRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"scopes": ["read", "write"], "label": "ingest job"},
                {
                    "scopes": ["read"],
                    "label": "search frontend",
                    "expires_at": "2030-06-30T00:00:00Z",
                    "allowed_cidrs": ["203.0.113.0/24", "2001:db8::/32"],
                },
            ]
        },
    )

    scopes: list[ScopeIn] = Field(min_length=1, max_length=3)
    label: str | None = Field(default=None, min_length=1, max_length=100)
    expires_at: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "RFC 3339 time with an offset after which the key stops working (401). In the "
            "future and within the tier's maximum key lifetime; omitted: that maximum "
            "(none on premium)."
        ),
        json_schema_extra={"format": "date-time"},
    )
    allowed_cidrs: list[str] | None = Field(
        default=None,
        max_length=32,
        description=(
            "Networks the key may be used from (e.g. 203.0.113.0/24); a request from "
            "elsewhere gets 403. Omitted or empty: any address."
        ),
    )

    @field_validator("expires_at")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            expiry_moment(value)
        return value

    def expiry(self) -> datetime | None:
        """``expires_at`` as an aware UTC datetime (validated already)."""
        return None if self.expires_at is None else expiry_moment(self.expires_at)


def expiry_moment(text: str) -> datetime:
    """An RFC 3339 time with an offset, in UTC; ValueError otherwise."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("no offset")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            "expires_at must be an RFC 3339 time with an offset, e.g. 2030-01-31T00:00:00Z"
        ) from None


class ChangeTierRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tier": "premium", "reason": "signed annual contract"}]},
    )

    tier: TierIn
    reason: str = Field(min_length=1, max_length=500, description="Why; recorded in the event")


class BillingRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "invoice_issued",
                    "amount_cents": 4900,
                    "currency": "EUR",
                    "reference": "INV-2025-0042",
                    "reason": "monthly invoice, standard tier",
                }
            ]
        },
    )

    kind: Literal["invoice_issued", "payment_received", "payment_failed"]
    amount_cents: int = Field(ge=0, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    reference: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500, description="Why; recorded in the event")


class ReasonRequest(AdminRequest):
    """Why an operator does something; recorded in the event (resume, delete)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "invoice INV-42 paid"}]}
    )

    reason: str = Field(min_length=1, max_length=500)


class ClientOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_CLIENT_EXAMPLE]})

    client_id: str
    name: str
    email: str
    tier: Tier
    status: ClientStatus
    created_at: str


class ClientDetailOut(ClientOut):
    """A client as the GET routes show it; usage is filled in once metering lands."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_CLIENT_EXAMPLE, "usage": None}]})

    usage: dict[str, Any] | None = None


class ClientListOut(BaseModel):
    clients: list[ClientDetailOut]


class IssuedKeyOut(BaseModel):
    """The only response that ever carries a key's secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "9f1c2e3d4b5a6978",
                    "api_key": "vp_9f1c2e3d4b5a6978_3q2-7wEXAMPLEsecretEXAMPLEsecretEXAMPLE_0",
                    "expires_at": "2025-04-01T09:16:40.000001Z",
                }
            ]
        }
    )

    key_id: str
    api_key: str
    expires_at: str | None = Field(
        default=None, description="When the key stops working (UTC); null: never"
    )


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "9f1c2e3d4b5a6978",
                    "label": "ingest job",
                    "scopes": ["read", "write"],
                    "created_at": "2025-01-31T09:16:40.000001Z",
                    "revoked_at": None,
                    "expires_at": "2025-04-01T09:16:40.000001Z",
                    "allowed_cidrs": ["203.0.113.0/24"],
                    "last_used_at": "2025-02-03T11:02:17.531200Z",
                }
            ]
        }
    )

    key_id: str
    label: str | None
    scopes: list[str]
    created_at: str
    revoked_at: str | None
    expires_at: str | None = Field(default=None, description="UTC; null: never expires")
    allowed_cidrs: list[str] = Field(
        default_factory=list, description="Networks it may be used from; empty: any"
    )
    last_used_at: str | None = Field(
        default=None,
        description=(
            "Last successful authentication (UTC), coarse: written at most once a minute "
            "per key, a few seconds after the use; null: never used"
        ),
    )


class ApiKeyListOut(BaseModel):
    keys: list[ApiKeyOut]


@pydantic_dataclass(
    frozen=True,
    config=ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "seq": 1,
                    "event_id": "5b0e8c1f9a2d4e6f8a7b6c5d4e3f2a1b",
                    "type": ClientCreated.event_type,
                    "schema_version": 1,
                    "occurred_at": "2025-01-31T09:15:02.123456Z",
                    "actor": "admin",
                    "client_id": "c3f2a9c0d1e4b5a67",
                    "data": {"name": "Acme Robotics", "email": "ops@acme.example", "tier": "free"},
                    "prev_hash": "0" * 64,
                    "hash": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
                }
            ]
        }
    ),
)
class EventOut(StoredEvent):
    """One stored event: its place in the log, provenance, data and chain link."""


def event_out(stored: StoredEvent) -> EventOut:
    """A stored event in the API's event shape (the record's own fields, by name)."""
    return EventOut(**stored.record())


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_after_seq: int = Field(description="Pass as after_seq to read the next page.")


class MismatchOut(BaseModel):
    seq: int
    reason: str


class ChainReportOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ok": True,
                    "events": 42,
                    "head_hash": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
                    "mismatches": [],
                }
            ]
        }
    )

    ok: bool
    events: int
    head_hash: str
    mismatches: list[MismatchOut]
