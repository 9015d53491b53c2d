"""Handlers of the operating side: pause, resume, usage, census, billing anomalies.

Registered in ``handlers.HANDLERS`` like every other account command.
"""

from __future__ import annotations

from dataclasses import replace

import pydantic

from coordinator.accounts.commands import (
    FlagBillingAnomaly,
    PauseClient,
    RecordBackupActivity,
    RecordCensus,
    RecordStorageLow,
    RecordUsage,
    ResumeClient,
)
from coordinator.accounts.model import (
    ClientStatus,
    InvalidCommand,
    valid_reason,
    valid_reference,
)
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.accounts.views import ClientView, load_live_client
from eventlog.events import (
    BackupFailed,
    BackupPruned,
    BackupRestored,
    BackupTaken,
    BillingAnomalyDetected,
    CensusSnapshotTaken,
    ClientPaused,
    ClientResumed,
    Event,
    RestoreDrillCompleted,
    StorageFloorReached,
    UsageRecorded,
)
from eventlog.records import StoredEvent

MAX_CENSUS_SCAN = 1000


def _validated(build: type[Event], **fields: object) -> Event:
    try:
        return build(**fields)
    except pydantic.ValidationError as exc:
        raise InvalidCommand(str(exc.errors()[0]["msg"])) from None


async def pause_client(cmd: PauseClient, uow: AccountsUnitOfWork) -> ClientView:
    """Mark the client paused and record ClientPaused; pausing a paused client changes nothing.

    The status flips in the same transaction as the append, so the next data-plane
    request of any of its keys is answered 423 (the key cache is evicted on commit).
    """
    reason = valid_reference(cmd.reason)

    def body(tx: AccountsTransaction) -> ClientView:
        client = load_live_client(tx, cmd.client_id)
        if client.status is ClientStatus.PAUSED:
            return ClientView.of(client)
        paused = replace(client, status=ClientStatus.PAUSED)
        tx.update_client(paused)
        event = ClientPaused(client_id=client.client_id, reason=reason, automatic=cmd.automatic)
        tx.append([event], cmd.actor)
        return ClientView.of(paused)

    return await uow.write(body)


async def resume_client(cmd: ResumeClient, uow: AccountsUnitOfWork) -> ClientView:
    """Mark the client active again and record ClientResumed (once its data is back hot)."""
    reason = valid_reason(cmd.reason)

    def body(tx: AccountsTransaction) -> ClientView:
        client = load_live_client(tx, cmd.client_id)
        if client.status is not ClientStatus.PAUSED:
            return ClientView.of(client)
        active = replace(client, status=ClientStatus.ACTIVE)
        tx.update_client(active)
        tx.append([ClientResumed(client_id=client.client_id, reason=reason)], cmd.actor)
        return ClientView.of(active)

    return await uow.write(body)


async def record_usage(cmd: RecordUsage, uow: AccountsUnitOfWork) -> StoredEvent:
    """Record one metering period (even for a deleted client: it was used)."""
    event = _validated(
        UsageRecorded,
        client_id=cmd.client_id,
        period_start=cmd.period_start,
        period_end=cmd.period_end,
        requests=cmd.requests,
        queries=cmd.queries,
        vectors_upserted=cmd.vectors_upserted,
        vectors_stored=cmd.vectors_stored,
        bytes_stored=cmd.bytes_stored,
        rejected=cmd.rejected,
    )

    def body(tx: AccountsTransaction) -> StoredEvent:
        (stored,) = tx.append([event], cmd.actor)
        return stored

    return await uow.write(body)


def find_census(tx: AccountsTransaction, date: str) -> StoredEvent | None:
    """The census event recorded for ``date``, if any."""
    after = 0
    while True:
        page = tx.events.read(after, MAX_CENSUS_SCAN, None, CensusSnapshotTaken.event_type)
        for stored in page:
            if stored.data.get("date") == date:
                return stored
        if len(page) < MAX_CENSUS_SCAN:
            return None
        after = page[-1].seq


async def record_census(cmd: RecordCensus, uow: AccountsUnitOfWork) -> StoredEvent:
    """Record a census archive; if ``date`` already has one, return that one unchanged."""
    event = _validated(
        CensusSnapshotTaken,
        archive=cmd.archive,
        sha256=cmd.sha256,
        clients=cmd.clients,
        date=cmd.date,
        totals=cmd.totals,
        head_seq=cmd.head_seq,
        head_hash=cmd.head_hash,
    )

    def body(tx: AccountsTransaction) -> StoredEvent:
        existing = find_census(tx, cmd.date)
        if existing is not None:
            return existing
        (stored,) = tx.append([event], cmd.actor)
        return stored

    return await uow.write(body)


async def flag_billing_anomaly(cmd: FlagBillingAnomaly, uow: AccountsUnitOfWork) -> StoredEvent:
    """Record BillingAnomalyDetected with the figures that triggered it."""
    event = _validated(
        BillingAnomalyDetected,
        client_id=cmd.client_id,
        metric=cmd.metric,
        observed=cmd.observed,
        baseline=cmd.baseline,
        window_hours=cmd.window_hours,
    )

    def body(tx: AccountsTransaction) -> StoredEvent:
        load_live_client(tx, cmd.client_id)
        (stored,) = tx.append([event], cmd.actor)
        return stored

    return await uow.write(body)


async def record_storage_low(cmd: RecordStorageLow, uow: AccountsUnitOfWork) -> StoredEvent:
    """Record StorageFloorReached: a worker store below its free-space floor."""
    event = _validated(
        StorageFloorReached,
        worker_id=cmd.worker_id,
        store=cmd.store,
        free_bytes=cmd.free_bytes,
        total_bytes=cmd.total_bytes,
        min_free_bytes=cmd.min_free_bytes,
    )

    def body(tx: AccountsTransaction) -> StoredEvent:
        (stored,) = tx.append([event], cmd.actor)
        return stored

    return await uow.write(body)


BACKUP_EVENTS = (BackupTaken, BackupFailed, BackupPruned, BackupRestored, RestoreDrillCompleted)


async def record_backup_activity(cmd: RecordBackupActivity, uow: AccountsUnitOfWork) -> StoredEvent:
    """Record one backup fact; only the backup events may come this way."""
    if not isinstance(cmd.event, BACKUP_EVENTS):
        raise InvalidCommand("not a backup event")

    def body(tx: AccountsTransaction) -> StoredEvent:
        (stored,) = tx.append([cmd.event], cmd.actor)
        return stored

    return await uow.write(body)
