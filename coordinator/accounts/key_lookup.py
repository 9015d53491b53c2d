"""The key check's database read, doing the same work whether the key id exists or not.

An unknown key id and a known one with a wrong secret must be refused alike,
in body and in time (shared/API.md: one 401 for all). The read is therefore
one row in both cases: a probe row left-joined to the key and its client, and
a miss builds its records from a stand-in row exactly as a hit builds them
from the stored one, then throws them away.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, literal, select

from coordinator.accounts.model import (
    ApiKeyRecord,
    ClientRecord,
    ClientStatus,
    Principal,
    Scope,
    Tier,
    principal_for,
)
from coordinator.accounts.tables import api_keys_table, clients_table

# What a miss builds its throw-away principal from: shaped like a typical stored key.
_STAND_IN: Mapping[str, Any] = {
    "key_id": "0000000000000000",
    "client_id": "c0000000000000000",
    "label": None,
    "scopes": '["read","write"]',
    "digest": "0" * 64,
    "created_at": "2000-01-01T00:00:00.000000Z",
    "revoked_at": None,
    "expires_at": "2000-04-01T00:00:00.000000Z",
    "allowed_cidrs": None,
    "last_used_at": None,
    "name": "-",
    "email": "-",
    "tier": Tier.FREE.value,
    "status": ClientStatus.ACTIVE.value,
    "client_created_at": "2000-01-01T00:00:00.000000Z",
}


def api_key_record(m: Mapping[Any, Any]) -> ApiKeyRecord:
    """An ``api_keys`` row as a record."""
    return ApiKeyRecord(
        key_id=m["key_id"],
        client_id=m["client_id"],
        label=m["label"],
        scopes=tuple(Scope(s) for s in orjson.loads(m["scopes"])),
        digest=m["digest"],
        created_at=m["created_at"],
        revoked_at=m["revoked_at"],
        expires_at=m["expires_at"],
        allowed_cidrs=tuple(orjson.loads(m["allowed_cidrs"])) if m["allowed_cidrs"] else (),
        last_used_at=m["last_used_at"],
    )


def _principal_of(m: Mapping[Any, Any]) -> Principal | None:
    client = ClientRecord(
        client_id=m["client_id"],
        name=m["name"],
        email=m["email"],
        tier=Tier(m["tier"]),
        status=ClientStatus(m["status"]),
        created_at=m["client_created_at"],
    )
    return principal_for(api_key_record(m), client)


def find_principal(conn: Connection, key_id: str) -> Principal | None:
    """The principal a stored key grants, or None (unknown, revoked, client deleted)."""
    probe = select(literal(key_id).label("probe")).subquery()
    query = select(
        probe.c.probe,
        api_keys_table,
        clients_table.c.name,
        clients_table.c.email,
        clients_table.c.tier,
        clients_table.c.status,
        clients_table.c.created_at.label("client_created_at"),
    ).select_from(
        probe.outerjoin(api_keys_table, api_keys_table.c.key_id == probe.c.probe).outerjoin(
            clients_table, clients_table.c.client_id == api_keys_table.c.client_id
        )
    )
    m = conn.execute(query).one()._mapping
    found = m["key_id"] is not None and m["tier"] is not None
    principal = _principal_of(m if found else _STAND_IN)
    return principal if found else None
