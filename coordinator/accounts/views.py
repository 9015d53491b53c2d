"""Read side of accounts: what the admin API shows, never digests or secrets."""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.accounts.model import (
    ApiKeyRecord,
    ClientNotFound,
    ClientRecord,
    ClientStatus,
    live_client,
    valid_client_id,
)
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from eventlog.hashchain import ChainReport
from eventlog.records import StoredEvent


@dataclass(frozen=True, slots=True)
class ClientView:
    client_id: str
    name: str
    email: str
    tier: str
    status: str
    created_at: str

    @classmethod
    def of(cls, client: ClientRecord) -> ClientView:
        return cls(
            client_id=client.client_id,
            name=client.name,
            email=client.email,
            tier=client.tier.value,
            status=client.status.value,
            created_at=client.created_at,
        )


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    key_id: str
    label: str | None
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None
    expires_at: str | None = None
    allowed_cidrs: tuple[str, ...] = ()
    last_used_at: str | None = None

    @classmethod
    def of(cls, key: ApiKeyRecord) -> ApiKeyView:
        return cls(
            key_id=key.key_id,
            label=key.label,
            scopes=tuple(s.value for s in key.scopes),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
            expires_at=key.expires_at,
            allowed_cidrs=key.allowed_cidrs,
            last_used_at=key.last_used_at,
        )


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """The one object that ever holds a key's secret; kept out of reprs and logs."""

    key_id: str
    api_key: str = field(repr=False)
    expires_at: str | None = None


def load_live_client(tx: AccountsTransaction, client_id: str) -> ClientRecord:
    """The live client with this id, or ClientNotFound."""
    # An id that cannot exist is answered like one that does not.
    if not valid_client_id(client_id):
        raise ClientNotFound("no such client")
    return live_client(tx.get_client(client_id))


async def get_client(uow: AccountsUnitOfWork, client_id: str) -> ClientView:
    """One live client, or ClientNotFound."""
    return await uow.read(lambda tx: ClientView.of(load_live_client(tx, client_id)))


async def list_clients(uow: AccountsUnitOfWork) -> list[ClientView]:
    """Every client not deleted, oldest first."""

    def body(tx: AccountsTransaction) -> list[ClientView]:
        live = (c for c in tx.list_clients() if c.status is not ClientStatus.DELETED)
        return [ClientView.of(c) for c in live]

    return await uow.read(body)


async def list_api_keys(uow: AccountsUnitOfWork, client_id: str) -> list[ApiKeyView]:
    """A live client's keys, revoked ones included, oldest first."""

    def body(tx: AccountsTransaction) -> list[ApiKeyView]:
        load_live_client(tx, client_id)
        return [ApiKeyView.of(k) for k in tx.list_api_keys(client_id)]

    return await uow.read(body)


async def list_events(
    uow: AccountsUnitOfWork,
    after_seq: int = 0,
    limit: int = 100,
    client_id: str | None = None,
    type: str | None = None,
) -> list[StoredEvent]:
    """A page of the event log in seq order."""
    return await uow.read(lambda tx: tx.events.read(after_seq, limit, client_id, type))


async def verify_chain(uow: AccountsUnitOfWork) -> ChainReport:
    """Walk the hash chain from genesis."""
    return await uow.read(lambda tx: tx.events.verify_chain())
