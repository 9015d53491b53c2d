"""Account command handlers: load state, decide with the model, append events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, overload

import pydantic

from coordinator.accounts import lifecycle, login_emails, operators
from coordinator.accounts.commands import (
    ChangeTier,
    Command,
    CreateClient,
    DeleteClient,
    FlagBillingAnomaly,
    IssueApiKey,
    IssueOperator,
    LinkLoginEmail,
    PauseClient,
    RecordBackupActivity,
    RecordBilling,
    RecordCensus,
    RecordCollectionCreated,
    RecordCollectionDeleted,
    RecordStorageLow,
    RecordUsage,
    ResumeClient,
    RevokeApiKey,
    RevokeOperator,
)
from coordinator.accounts.key_policy import key_expiry, parse_iso_utc, valid_cidrs
from coordinator.accounts.model import (
    ApiKeyRecord,
    ClientNotFound,
    ClientRecord,
    ClientStatus,
    InvalidCommand,
    key_digest,
    needs_revocation,
    new_api_key,
    new_client_id,
    new_key_id,
    valid_amount,
    valid_billing_kind,
    valid_client_id,
    valid_currency,
    valid_email,
    valid_label,
    valid_name,
    valid_reason,
    valid_reference,
    valid_scopes,
    valid_tier,
)
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.accounts.views import ClientView, IssuedApiKey, load_live_client
from eventlog.events import (
    ApiKeyIssued,
    ApiKeyRevoked,
    ClientCreated,
    ClientDeleted,
    ClientEvent,
    CollectionCreated,
    CollectionDeleted,
    DeletionReceipt,
    InvoiceIssued,
    PaymentFailed,
    PaymentReceived,
    RemovedFile,
    TierChanged,
)
from eventlog.records import StoredEvent

_BILLING_EVENTS: dict[str, type[InvoiceIssued | PaymentReceived | PaymentFailed]] = {
    "invoice_issued": InvoiceIssued,
    "payment_received": PaymentReceived,
    "payment_failed": PaymentFailed,
}


async def create_client(cmd: CreateClient, uow: AccountsUnitOfWork) -> ClientView:
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
    cidrs = valid_cidrs(cmd.allowed_cidrs)

    def body(tx: AccountsTransaction) -> IssuedApiKey:
        client = load_live_client(tx, cmd.client_id)
        expires_at = key_expiry(client.tier.value, cmd.expires_at, parse_iso_utc(tx.now))
        key_id = new_key_id()
        while tx.get_api_key(key_id) is not None:
            key_id = new_key_id()
        api_key = new_api_key(key_id)
        digest = key_digest(pepper, api_key)
        record = ApiKeyRecord(
            key_id,
            client.client_id,
            label,
            scopes,
            digest,
            tx.now,
            expires_at=expires_at,
            allowed_cidrs=cidrs,
        )
        tx.add_api_key(record)
        event = ApiKeyIssued(
            client_id=client.client_id,
            key_id=key_id,
            scopes=tuple(s.value for s in scopes),
            label=label,
            expires_at=expires_at,
            allowed_cidrs=cidrs,
        )
        tx.append([event], cmd.actor)
        return IssuedApiKey(key_id=key_id, api_key=api_key, expires_at=expires_at)

    return await uow.write(body)


async def revoke_api_key(cmd: RevokeApiKey, uow: AccountsUnitOfWork) -> None:
    """Revoke a key; revoking an already revoked key changes nothing."""

    def body(tx: AccountsTransaction) -> None:
        client = load_live_client(tx, cmd.client_id)
        if needs_revocation(tx.get_api_key(cmd.key_id), client.client_id):
            tx.revoke_api_key(cmd.key_id, tx.now)
            tx.append([ApiKeyRevoked(client_id=client.client_id, key_id=cmd.key_id)], cmd.actor)

    await uow.write(body)


async def change_tier(cmd: ChangeTier, uow: AccountsUnitOfWork) -> ClientView:
    """Move a client to another tier; the same tier again changes nothing."""
    tier, reason = valid_tier(cmd.tier), valid_reason(cmd.reason)

    def body(tx: AccountsTransaction) -> ClientView:
        client = load_live_client(tx, cmd.client_id)
        if client.tier is tier:
            return ClientView.of(client)
        changed = replace(client, tier=tier)
        tx.update_client(changed)
        event = TierChanged(
            client_id=client.client_id,
            from_tier=client.tier.value,
            to_tier=tier.value,
            reason=reason,
        )
        tx.append([event], cmd.actor)
        return ClientView.of(changed)

    return await uow.write(body)


async def record_billing(cmd: RecordBilling, uow: AccountsUnitOfWork) -> StoredEvent:
    """Record an invoice, payment or failed payment; returns the stored event."""
    cls = _BILLING_EVENTS[valid_billing_kind(cmd.kind)]
    amount, currency = valid_amount(cmd.amount_cents), valid_currency(cmd.currency)
    reference, reason = valid_reference(cmd.reference), valid_reason(cmd.reason)

    def body(tx: AccountsTransaction) -> StoredEvent:
        client = load_live_client(tx, cmd.client_id)
        event = cls(
            client_id=client.client_id,
            amount_cents=amount,
            currency=currency,
            reference=reference,
            reason=reason,
        )
        (stored,) = tx.append([event], cmd.actor)
        return stored

    return await uow.write(body)


async def delete_client(cmd: DeleteClient, uow: AccountsUnitOfWork) -> bool:
    """Mark a client deleted (its keys stop at once); False if it already was."""
    reason = valid_reason(cmd.reason)

    def body(tx: AccountsTransaction) -> bool:
        client = tx.get_client(cmd.client_id) if valid_client_id(cmd.client_id) else None
        if client is None:
            raise ClientNotFound("no such client")
        if client.status is ClientStatus.DELETED:
            return False
        tx.update_client(replace(client, status=ClientStatus.DELETED))
        head = tx.events.head()
        destroyed = tx.data_keys.of_client(client.client_id)
        tx.data_keys.destroy(client.client_id)
        receipt = DeletionReceipt(
            data_key_ids=tuple(k.key_id for k in destroyed),
            files=tuple(RemovedFile(path=p, sha256=h) for p, h in cmd.files),
            files_hashed_at=cmd.files_hashed_at or tx.now,
            chain_head_seq=head.seq,
            chain_head_hash=head.hash,
        )
        event = ClientDeleted(client_id=client.client_id, reason=reason, receipt=receipt)
        tx.append([event], cmd.actor)
        return True

    return await uow.write(body)


def _client_event(build: Callable[[], ClientEvent]) -> ClientEvent:
    try:
        return build()
    except pydantic.ValidationError as exc:
        raise InvalidCommand(str(exc.errors()[0]["msg"])) from None


async def record_collection_created(cmd: RecordCollectionCreated, uow: AccountsUnitOfWork) -> None:
    """Record a collection the owning worker has confirmed creating."""
    event = _client_event(
        lambda: CollectionCreated(
            client_id=cmd.client_id,
            name=cmd.name,
            dimension=cmd.dimension,
            metric=cmd.metric,
            index=cmd.index,
        )
    )

    def body(tx: AccountsTransaction) -> None:
        load_live_client(tx, cmd.client_id)
        tx.append([event], cmd.actor)

    await uow.write(body)


async def record_collection_deleted(cmd: RecordCollectionDeleted, uow: AccountsUnitOfWork) -> None:
    """Record a collection the owning worker has confirmed deleting."""
    files = tuple(RemovedFile(path=p, sha256=h) for p, h in cmd.files)
    event = _client_event(
        lambda: CollectionDeleted(client_id=cmd.client_id, name=cmd.name, files=files)
    )

    def body(tx: AccountsTransaction) -> None:
        load_live_client(tx, cmd.client_id)
        tx.append([event], cmd.actor)

    await uow.write(body)


Handler = Callable[[Any, AccountsUnitOfWork], Awaitable[Any]]
# Only a command that issues a key (its digest is keyed by the pepper) gets the pepper.
KeyIssuer = Callable[[Any, AccountsUnitOfWork, bytes], Awaitable[Any]]

HANDLERS: dict[type, Handler] = {
    CreateClient: create_client,
    RevokeApiKey: revoke_api_key,
    LinkLoginEmail: login_emails.link_login_email,
    ChangeTier: change_tier,
    RecordBilling: record_billing,
    DeleteClient: delete_client,
    RecordCollectionCreated: record_collection_created,
    RecordCollectionDeleted: record_collection_deleted,
    PauseClient: lifecycle.pause_client,
    ResumeClient: lifecycle.resume_client,
    RecordUsage: lifecycle.record_usage,
    RecordCensus: lifecycle.record_census,
    FlagBillingAnomaly: lifecycle.flag_billing_anomaly,
    RecordStorageLow: lifecycle.record_storage_low,
    RecordBackupActivity: lifecycle.record_backup_activity,
    RevokeOperator: operators.revoke_operator,
}

KEY_ISSUERS: dict[type, KeyIssuer] = {
    IssueApiKey: issue_api_key,
    IssueOperator: operators.issue_operator,
}


async def dispatch(cmd: Command, uow: AccountsUnitOfWork, pepper: bytes) -> Any:
    """Run a command's handler; the pepper goes only to a key issuer."""
    issuer = KEY_ISSUERS.get(type(cmd))
    if issuer is not None:
        return await issuer(cmd, uow, pepper)
    return await HANDLERS[type(cmd)](cmd, uow)


@overload
async def handle(cmd: CreateClient, uow: AccountsUnitOfWork, pepper: bytes) -> ClientView: ...
@overload
async def handle(cmd: IssueApiKey, uow: AccountsUnitOfWork, pepper: bytes) -> IssuedApiKey: ...
@overload
async def handle(cmd: RevokeApiKey, uow: AccountsUnitOfWork, pepper: bytes) -> None: ...
@overload
async def handle(cmd: ChangeTier, uow: AccountsUnitOfWork, pepper: bytes) -> ClientView: ...
@overload
async def handle(cmd: RecordBilling, uow: AccountsUnitOfWork, pepper: bytes) -> StoredEvent: ...
@overload
async def handle(cmd: DeleteClient, uow: AccountsUnitOfWork, pepper: bytes) -> bool: ...
@overload
async def handle(
    cmd: RecordCollectionCreated | RecordCollectionDeleted, uow: AccountsUnitOfWork, pepper: bytes
) -> None: ...
async def handle(cmd: Command, uow: AccountsUnitOfWork, pepper: bytes) -> Any:
    """Dispatch a command to its handler."""
    return await dispatch(cmd, uow, pepper)
