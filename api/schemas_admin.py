"""Request and response models of the admin plane (``/admin/v1``), as in shared/API.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from eventlog.store import StoredEvent

EMAIL_PATTERN = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"
CLIENT_ID_PATTERN = r"^[a-z0-9][a-z0-9_]{0,63}$"

_CLIENT_EXAMPLE: JsonDict = {
    "client_id": "c3f2a9c0d1e4b5a67",
    "name": "Acme Robotics",
    "email": "ops@acme.example",
    "tier": "standard",
    "status": "active",
    "created_at": "2025-01-31T09:15:02.123456Z",
}


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
    tier: Literal["free", "standard", "premium"] = "free"

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
        json_schema_extra={"examples": [{"scopes": ["read", "write"], "label": "ingest job"}]},
    )

    scopes: list[Literal["read", "write", "manage"]] = Field(min_length=1, max_length=3)
    label: str | None = Field(default=None, min_length=1, max_length=100)


class ChangeTierRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tier": "premium", "reason": "signed annual contract"}]},
    )

    tier: Literal["free", "standard", "premium"]
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
    tier: Literal["free", "standard", "premium"]
    status: Literal["active", "paused", "deleted"]
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
                }
            ]
        }
    )

    key_id: str
    api_key: str


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
                }
            ]
        }
    )

    key_id: str
    label: str | None
    scopes: list[str]
    created_at: str
    revoked_at: str | None


class ApiKeyListOut(BaseModel):
    keys: list[ApiKeyOut]


class EventOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "seq": 1,
                    "event_id": "5b0e8c1f9a2d4e6f8a7b6c5d4e3f2a1b",
                    "type": "client.created",
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
    )

    seq: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: str
    actor: str
    client_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


def event_out(stored: StoredEvent) -> EventOut:
    """A stored event in the API's event shape."""
    return EventOut(
        seq=stored.seq,
        event_id=stored.event_id,
        type=stored.type,
        schema_version=stored.schema_version,
        occurred_at=stored.occurred_at,
        actor=stored.actor,
        client_id=stored.client_id,
        data=stored.data,
        prev_hash=stored.prev_hash,
        hash=stored.hash,
    )


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
