"""Per-client backups and restores: jobs, events and retention, over a ``TenantBackups`` port.

A backup runs in the background: the event log's head is read and signed first (the
anchor goes into the manifest and ``<data>/anchors``), then the worker owning the
client (or, for a paused client, any worker, from the cold copy) writes the files and
the manifest to the backup store, and ``BackupTaken`` is recorded. A failure records
``BackupFailed`` (operations get an email). Restores verify every file's SHA-256 in the
store, then have the owner swap the verified copies in; ``BackupRestored`` follows.
Retention keeps each client's newest daily backups per tier (``coordinator.tiers``);
a client's newest backup is never pruned, so a paused client always keeps one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from coordinator.accounts import Accounts, RecordBackupActivity, RecordCollectionCreated
from coordinator.data_keys import DataKeys
from coordinator.errors import WorkerRefused
from coordinator.router import TenantRouter
from coordinator.tiers import backup_retention
from coordinator.usage import iso, utc_clock
from eventlog.anchors import HeadAnchorer
from eventlog.events import (
    BackupFailed,
    BackupPruned,
    BackupRestored,
    BackupTaken,
    ClientStatus,
    Event,
    RestoreDrillCompleted,
)
from workers.backup_drill import DrillReport, run_drill
from workers.backup_store import (
    BackupDamaged,
    BackupNotFound,
    BackupStore,
    check_backup_id,
    new_backup_id,
    verify_backup,
)
from workers.protocol import Op
from workers.sealed import Keyring

log = logging.getLogger("vectorpanda.backups")

# Copying a large client takes a while; a backup is not a data request.
BACKUP_TIMEOUT_S = 3600.0


class BackupRefused(WorkerRefused):
    """A backup or restore request that cannot be done (answered like a worker refusal)."""


class TenantBackups(Protocol):
    """Who copies the files: the worker fleet, or the local disk in tests."""

    async def backup(
        self, tenant: str, request: dict[str, Any], paused: bool
    ) -> dict[str, Any]: ...

    async def restore(self, tenant: str, request: dict[str, Any]) -> dict[str, Any]: ...


class WorkerTenantBackups:
    """BACKUP_TENANT / RESTORE_TENANT on the owner; BACKUP_COLD_TENANT for a paused tenant."""

    def __init__(self, router: TenantRouter, timeout_s: float = BACKUP_TIMEOUT_S) -> None:
        self._router = router
        self._timeout_s = timeout_s

    async def backup(self, tenant: str, request: dict[str, Any], paused: bool) -> dict[str, Any]:
        if paused:
            reply = await self._router.call_any(
                tenant, Op.BACKUP_COLD_TENANT, request, self._timeout_s
            )
        else:
            reply = await self._router.call(
                tenant, Op.BACKUP_TENANT, request, retry=False, timeout_s=self._timeout_s
            )
        return _result(reply.header)

    async def restore(self, tenant: str, request: dict[str, Any]) -> dict[str, Any]:
        reply = await self._router.call(
            tenant, Op.RESTORE_TENANT, request, retry=False, timeout_s=self._timeout_s
        )
        return _result(reply.header)


def _result(header: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k not in ("op", "rid", "ok", "cost")}


@dataclass(slots=True)
class Job:
    """A backup or restore this coordinator started: its status while it runs or if it failed."""

    job_id: str
    client_id: str
    kind: str  # backup | snapshot | restore
    status: str  # running | complete | failed
    started_at: str
    collections: list[str] | None = None
    completed_at: str | None = None
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def listing(self) -> dict[str, Any]:
        # A job that completed while the store was being read is listed from its result
        # (the same figures as its manifest), never as an empty backup.
        return {
            "backup_id": self.job_id,
            "kind": self.kind,
            "status": self.status,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "collections": list(self.result.get("collections") or self.collections or []),
            "vectors": int(self.result.get("vectors", 0)),
            "bytes": int(self.result.get("bytes", 0)),
            "head_seq": int(self.result.get("head_seq", 0)),
        }


def listing(manifest: dict[str, Any]) -> dict[str, Any]:
    """A stored manifest as ``GET …/backups`` lists it."""
    return {
        "backup_id": manifest["backup_id"],
        "kind": manifest.get("kind", "backup"),
        "status": "complete",
        "started_at": manifest.get("started_at"),
        "completed_at": manifest.get("completed_at"),
        "collections": [c["name"] for c in manifest.get("collections", [])],
        "vectors": int(manifest.get("vectors", 0)),
        "bytes": int(manifest.get("bytes", 0)),
        "head_seq": int((manifest.get("head") or {}).get("seq", 0)),
    }


class BackupService:
    """Start, list and restore backups; prune by tier; every fact recorded as an event."""

    def __init__(
        self,
        accounts: Accounts,
        tenants: TenantBackups,
        store: BackupStore,
        anchorer: HeadAnchorer | None = None,
        clock: Callable[[], datetime] = utc_clock,
        *,
        data_keys: DataKeys | None = None,
    ) -> None:
        self._accounts = accounts
        self._tenants = tenants
        self.store = store
        self._anchorer = anchorer
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        # encryption at rest: to read encrypted backups with their client's keys
        self.data_keys = data_keys

    async def _record(self, event: Event, actor: str) -> None:
        await self._accounts.handle(RecordBackupActivity(event=event, actor=actor))

    async def start(
        self,
        client_id: str,
        actor: str,
        kind: str = "backup",
        collections: list[str] | None = None,
        prune: bool = False,
    ) -> Job:
        """Begin a backup (or a one-collection snapshot) in the background."""
        view = await self._accounts.get_client(client_id)  # ClientNotFound: 404
        started = iso(self._clock())
        job_id = new_backup_id("s" if kind == "snapshot" else "b", started)
        job = Job(job_id, client_id, kind, "running", started, collections)
        self._jobs[job_id] = job
        paused = view.status == ClientStatus.PAUSED
        job.task = asyncio.create_task(self._run(job, paused, view.tier, actor, prune))
        return job

    async def _run(self, job: Job, paused: bool, tier: str, actor: str, prune: bool) -> None:
        try:
            head = await self._accounts.uow.read(lambda tx: tx.events.head())
            anchor: dict[str, Any] = {"seq": head.seq, "hash": head.hash}
            if self._anchorer is not None:
                # Signed into the manifest itself: one file per backup in <data>/anchors
                # would pile up (a backup per client per day).
                anchor = await asyncio.to_thread(
                    self._anchorer.sign,
                    head.seq,
                    head.hash,
                    job.started_at,
                    f"backup-{job.job_id}",
                )
            request = {
                "backup_id": job.job_id,
                "kind": job.kind,
                "collections": job.collections,
                "head": anchor,
                "started_at": job.started_at,
            }
            result = await self._tenants.backup(job.client_id, request, paused)
        except Exception as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.warning("backup %s of %s failed: %s", job.job_id, job.client_id, reason)
            job.status, job.error, job.completed_at = "failed", reason[:500], iso(self._clock())
            with contextlib.suppress(Exception):
                await self._record(
                    BackupFailed(
                        client_id=job.client_id,
                        backup_id=job.job_id,
                        kind="snapshot" if job.kind == "snapshot" else "backup",
                        reason=reason[:500],
                    ),
                    actor,
                )
            return
        job.status, job.completed_at, job.result = "complete", iso(self._clock()), result
        await self._record(
            BackupTaken(
                client_id=job.client_id,
                backup_id=job.job_id,
                kind="snapshot" if job.kind == "snapshot" else "backup",
                collections=tuple(result.get("collections", [])),
                vectors=int(result.get("vectors", 0)),
                bytes=int(result.get("bytes", 0)),
                head_seq=int(result.get("head_seq", 0)),
                location="cold" if result.get("location") == "cold" else "hot",
            ),
            actor,
        )
        try:
            if prune:
                await self.prune(job.client_id, tier, actor)
        finally:
            # Listed from the store from now on; dropped only after the pruning, so
            # idle() also waits for the prunes (and their events) this backup started.
            self._jobs.pop(job.job_id, None)

    async def idle(self) -> None:
        """Wait for every running backup and restore (tests, shutdown)."""
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        if tasks:
            await asyncio.wait(tasks)

    async def manifests(self, client_id: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.manifests, client_id)

    async def backups_of(
        self, client_id: str, kind: str = "backup", collection: str | None = None
    ) -> list[dict[str, Any]]:
        """Complete backups from the store, plus the ones running or failed here; oldest first."""
        rows = [
            listing(m)
            for m in await self.manifests(client_id)
            if m.get("kind", "backup") == kind
            and (
                collection is None or [c["name"] for c in m.get("collections", [])] == [collection]
            )
        ]
        known = {r["backup_id"] for r in rows}
        for job in list(self._jobs.values()):
            if job.client_id != client_id or job.kind != kind or job.job_id in known:
                continue
            if collection is not None and job.collections != [collection]:
                continue
            rows.append(job.listing())
        rows.sort(key=lambda r: (str(r["started_at"]), r["backup_id"]))
        return rows

    async def prune(self, client_id: str, tier: str, actor: str) -> list[str]:
        """Delete the client's daily backups beyond its tier's retention; never the newest."""
        keep = max(1, backup_retention(tier))
        daily = [m for m in await self.manifests(client_id) if m.get("kind", "backup") == "backup"]
        pruned = []
        for manifest in daily[: max(0, len(daily) - keep)]:
            backup_id = str(manifest["backup_id"])
            reason = f"retention of the {tier} tier: the newest {keep} daily backups are kept"
            # Recorded before the files go: a crash in between leaves a backup the log calls
            # pruned (the next prune deletes it, recording it again), never a deletion the log
            # does not know about.
            await self._record(
                BackupPruned(client_id=client_id, backup_id=backup_id, reason=reason), actor
            )
            await asyncio.to_thread(self.store.delete, client_id, backup_id)
            pruned.append(backup_id)
        return pruned

    async def manifest(self, client_id: str, backup_id: str) -> dict[str, Any]:
        """The complete backup's manifest; BackupRefused(not_found) if there is none."""
        try:
            check_backup_id(backup_id)
            return await asyncio.to_thread(self.store.manifest, client_id, backup_id)
        except (ValueError, BackupNotFound):
            raise BackupRefused("not_found", "backup not found") from None

    async def restore(
        self,
        client_id: str,
        backup_id: str,
        actor: str,
        collections: list[str] | None = None,
        suffix: str | None = None,
        rename: dict[str, str] | None = None,
        record_created: bool = True,
    ) -> Job:
        """Check the request, then restore in the background (checksums first).

        Collections the restore brings into being (a deleted one, or beside the live
        data) are recorded as created too, unless the caller records them itself.
        """
        view = await self._accounts.get_client(client_id)
        if view.status == ClientStatus.PAUSED:
            raise BackupRefused("conflict", "the client is paused; resume it before a restore")
        manifest = await self.manifest(client_id, backup_id)
        present = [c["name"] for c in manifest.get("collections", [])]
        for name in list(collections or []):
            if name not in present:
                raise BackupRefused("not_found", f"collection '{name}' is not in that backup")
        request = {
            "backup_id": backup_id,
            "collections": collections,
            "suffix": suffix,
            "rename": rename,
            # In place unless it goes beside the live data under new names.
            "replace": not suffix and not rename,
        }
        job = Job(f"r-{uuid.uuid4().hex[:16]}", client_id, "restore", "running", iso(self._clock()))
        job.collections = collections
        self._jobs[job.job_id] = job
        job.task = asyncio.create_task(self._restore(job, manifest, request, actor, record_created))
        return job

    async def _restore(
        self,
        job: Job,
        manifest: dict[str, Any],
        request: dict[str, Any],
        actor: str,
        record_created: bool,
    ) -> None:
        try:
            await asyncio.to_thread(verify_backup, self.store, job.client_id, manifest)
            result = await self._tenants.restore(job.client_id, request)
        except (BackupDamaged, Exception) as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.warning("restore %s of %s failed: %s", job.job_id, job.client_id, reason)
            job.status, job.error, job.completed_at = "failed", reason[:500], iso(self._clock())
            job.result = {"code": getattr(exc, "code", "unavailable")}
            return
        job.status, job.completed_at, job.result = "complete", iso(self._clock()), result
        await self._record(
            BackupRestored(
                client_id=job.client_id,
                backup_id=str(request["backup_id"]),
                restore_id=job.job_id,
                collections=tuple(result.get("from", [])),
                into=tuple(result.get("restored", [])),
                vectors=int(result.get("vectors", 0)),
            ),
            actor,
        )
        if not record_created:
            return
        sources = dict(zip(result.get("restored", []), result.get("from", []), strict=False))
        specs = {c["name"]: c.get("spec", {}) for c in manifest.get("collections", [])}
        for name in result.get("created", []):
            spec = specs.get(sources.get(name, name), {})
            await self._accounts.handle(
                RecordCollectionCreated(
                    job.client_id,
                    name,
                    int(spec.get("dimension", 1)),
                    str(spec.get("metric", "cosine")),
                    str(spec.get("index", "flat")),
                    actor,
                )
            )

    async def drill(self, actor: str, scratch: Path | None = None) -> DrillReport:
        """The restore drill over every client's newest backup; recorded as an event."""
        keyrings = {}
        if self.data_keys is not None:  # encrypted backups are read with their client's keys
            for client_id in await asyncio.to_thread(self.store.clients):
                wire = await self.data_keys.keyring_for(client_id)
                if wire is not None:
                    keyrings[client_id] = Keyring.from_wire(wire)
        report = await asyncio.to_thread(run_drill, self.store, scratch, keyrings)
        await self._record(
            RestoreDrillCompleted(
                ok=report.ok,
                clients=report.clients,
                backups=report.backups,
                bytes=report.bytes,
                failures=tuple(report.failures),
            ),
            actor,
        )
        return report

    async def settle(self, job: Job, wait_s: float | None) -> Job:
        """Wait up to ``wait_s`` (None: until done), so a small job answers with its outcome."""
        if job.task is not None and not job.task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(job.task), wait_s)
        return job
