"""Account command handlers: load state, decide with the model, append events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, overload

from coordinator.accounts.commands import Command, CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.model import (
    ApiKeyRecord,
    ClientRecord,
    ClientStatus,
    key_digest,
    needs_revocation,
    new_api_key,
    new_client_id,
    new_key_id,
    valid_email,
    valid_label,
    valid_name,
    valid_scopes,
    valid_tier,
)
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.accounts.views import ClientView, IssuedApiKey, load_live_client
from eventlog.events import ApiKeyIssued, ApiKeyRevoked, ClientCreated


async def create_client(cmd: CreateClient, uow: AccountsUnitOfWork, pepper: bytes) -> ClientView:
    """Create an active client and record ClientCreated."""
    name, email, tier = valid_name(cmd.name), valid_email(cmd.email), valid_tier(cmd.tier)

    def body(tx: AccountsTransaction) -> ClientView:
        client_id = new_client_id()
        while tx.get_client(client_id) is not None:
            client_id = new_client_id()
        client = ClientRecord(client_id, name, email, tier, ClientStatus.ACTIVE, tx.now)
        tx.add_client(client)
        tx.append(
            [ClientCreated(client_id=client_id, name=name, email=email, tier=tier.value)],
            cmd.actor,
        )
        return ClientView.of(client)

    return await uow.write(body)


async def issue_api_key(cmd: IssueApiKey, uow: AccountsUnitOfWork, pepper: bytes) -> IssuedApiKey:
    """Issue a key; only its digest is stored and only the caller ever sees the secret."""
    scopes, label = valid_scopes(cmd.scopes), valid_label(cmd.label)

    def body(tx: AccountsTransaction) -> IssuedApiKey:
        client = load_live_client(tx, cmd.client_id)
        key_id = new_key_id()
        while tx.get_api_key(key_id) is not None:
            key_id = new_key_id()
        api_key = new_api_key(key_id)
        digest = key_digest(pepper, api_key)
        tx.add_api_key(ApiKeyRecord(key_id, client.client_id, label, scopes, digest, tx.now))
        event = ApiKeyIssued(
            client_id=client.client_id,
            key_id=key_id,
            scopes=tuple(s.value for s in scopes),
            label=label,
        )
        tx.append([event], cmd.actor)
        return IssuedApiKey(key_id=key_id, api_key=api_key)

    return await uow.write(body)


async def revoke_api_key(cmd: RevokeApiKey, uow: AccountsUnitOfWork, pepper: bytes) -> None:
    """Revoke a key; revoking an already revoked key changes nothing."""

    def body(tx: AccountsTransaction) -> None:
        client = load_live_client(tx, cmd.client_id)
        if needs_revocation(tx.get_api_key(cmd.key_id), client.client_id):
            tx.revoke_api_key(cmd.key_id, tx.now)
            tx.append([ApiKeyRevoked(client_id=client.client_id, key_id=cmd.key_id)], cmd.actor)

    await uow.write(body)


Handler = Callable[[Any, AccountsUnitOfWork, bytes], Awaitable[Any]]

HANDLERS: dict[type, Handler] = {
    CreateClient: create_client,
    IssueApiKey: issue_api_key,
    RevokeApiKey: revoke_api_key,
}


@overload
async def handle(cmd: CreateClient, uow: AccountsUnitOfWork, pepper: bytes) -> ClientView: ...
@overload
async def handle(cmd: IssueApiKey, uow: AccountsUnitOfWork, pepper: bytes) -> IssuedApiKey: ...
@overload
async def handle(cmd: RevokeApiKey, uow: AccountsUnitOfWork, pepper: bytes) -> None: ...
async def handle(cmd: Command, uow: AccountsUnitOfWork, pepper: bytes) -> Any:
    """Dispatch a command to its handler."""
    return await HANDLERS[type(cmd)](cmd, uow, pepper)
