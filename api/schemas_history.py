"""Response models of the history reads (``/admin/v1/clients/{id}/history`` and ``/changes``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from coordinator.history.service import Change, ClientAsOf

_HASH = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
_HISTORY_EXAMPLE: JsonDict = {
    "client_id": "c3f2a9c0d1e4b5a67",
    "name": "Acme Robotics",
    "email": "ops@acme.example",
    "tier": "standard",
    "status": "active",
    "keys": [
        {
            "key_id": "9f86d081884c7d65",
            "scopes": ["read", "write"],
            "label": "ci",
            "issued_at": "2026-02-01T10:00:00.000000Z",
            "issued_by": "admin",
            "revoked_at": None,
            "revoked_by": None,
            "expires_at": None,
            "allowed_cidrs": [],
        }
    ],
    "collections": [
        {
            "name": "docs",
            "dimension": 384,
            "metric": "cosine",
            "index": "hnsw",
            "created_at": "2026-02-01T10:05:00.000000Z",
        }
    ],
    "billing": {
        "balances": [
            {
                "currency": "EUR",
                "invoiced_cents": 12000,
                "paid_cents": 9000,
                "failed_cents": 0,
                "balance_cents": 3000,
            }
        ],
        "failed_payments": 0,
    },
    "event_seq": 1042,
    "event_hash": _HASH,
}


class KeyAsOfOut(BaseModel):
    key_id: str
    scopes: list[str]
    label: str | None
    issued_at: str
    issued_by: str = Field(description="The actor that issued the key.")
    revoked_at: str | None
    revoked_by: str | None
    expires_at: str | None = Field(description="Null when the key never expires.")
    allowed_cidrs: list[str] = Field(description="Empty when any address may use it.")


class CollectionAsOfOut(BaseModel):
    name: str
    dimension: int | None
    metric: str | None
    index: str | None
    created_at: str


class BalanceOut(BaseModel):
    currency: str
    invoiced_cents: int
    paid_cents: int
    failed_cents: int = Field(description="Sum of failed payments (they change no balance).")
    balance_cents: int = Field(description="Invoiced minus paid: what the client owes.")


class BillingAsOfOut(BaseModel):
    balances: list[BalanceOut] = Field(description="One per currency ever billed, by code.")
    failed_payments: int


class ClientHistoryOut(BaseModel):
    """The client as of ``at``: every event about it up to that moment, folded."""

    model_config = ConfigDict(json_schema_extra={"examples": [_HISTORY_EXAMPLE]})

    client_id: str
    name: str
    email: str
    tier: str
    status: str = Field(description="active, paused or deleted as of that moment.")
    keys: list[KeyAsOfOut] = Field(description="Every key issued by then, revoked ones too.")
    collections: list[CollectionAsOfOut] = Field(description="Collections that existed then.")
    billing: BillingAsOfOut
    event_seq: int = Field(description="Seq of the last event folded into this answer.")
    event_hash: str = Field(description="Its chain hash: check it with GET /admin/v1/events.")


ChangeValue = str | list[str] | None


class ChangeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    at: str
    field: str = Field(description="name, email, tier, status, keys, collections or billing.")
    from_: ChangeValue = Field(
        alias="from",
        description="The value before (keys: live key ids; collections: names; "
        "billing: balances such as '30.00 EUR'); null before the client existed.",
    )
    to: ChangeValue
    actor: str
    reason: str | None
    event_seq: int


class ChangesOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changes": [
                        {
                            "at": "2026-03-03T09:12:44.512000Z",
                            "field": "tier",
                            "from": "free",
                            "to": "standard",
                            "actor": "operator:alice",
                            "reason": "signed the annual contract",
                            "event_seq": 1042,
                        }
                    ]
                }
            ]
        }
    )

    changes: list[ChangeOut]


def history_out(state: ClientAsOf) -> ClientHistoryOut:
    return ClientHistoryOut(
        client_id=state.client_id,
        name=state.name,
        email=state.email,
        tier=state.tier,
        status=state.status,
        keys=[KeyAsOfOut.model_validate(k, from_attributes=True) for k in state.keys],
        collections=[
            CollectionAsOfOut.model_validate(c, from_attributes=True) for c in state.collections
        ],
        billing=BillingAsOfOut(
            balances=[BalanceOut.model_validate(b, from_attributes=True) for b in state.balances],
            failed_payments=state.failed_payments,
        ),
        event_seq=state.event_seq,
        event_hash=state.event_hash,
    )


def changes_out(changes: list[Change]) -> ChangesOut:
    return ChangesOut(changes=[ChangeOut.model_validate(c, from_attributes=True) for c in changes])
