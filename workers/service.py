"""The worker's request dispatcher: ownership check, argument check, store call, reply."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from workers import handlers
from workers.backup_files import backup_cold, backup_owned, restore_owned
from workers.backup_store import BackupStore, LocalBackupStore
from workers.collection_spec import check_tenant_id
from workers.disk_space import GROWING_OPS, SpaceGuard, is_out_of_space, out_of_space_error
from workers.errors import StoreError
from workers.fair_share import FairShare
from workers.faiss_runtime import one_openmp_thread
from workers.handlers import BUDGETED, HANDLERS
from workers.ownership import Ownership
from workers.protocol import (
    DATA_OPS,
    STORAGE_OPS,
    TENANT_PAUSED_MESSAGE,
    ErrorCode,
    Frame,
    Op,
    reply_error,
    reply_ok,
)
from workers.query_batch import DEFAULT_QUERY_BATCH, QuickQuery, parse_quick, run_batches
from workers.read_write_lock import WouldBlock
from workers.sealed import Keyring
from workers.tenant_move import TenantMover
from workers.tenant_registry import TenantRegistry
from workers.tenant_store import TenantStore
from workers.work_budget import WorkBudget

log = logging.getLogger(__name__)

Reply = tuple[dict[str, Any], dict[str, np.ndarray]]
# Requests that read a collection (and may wait for its graph): see Activity.
READ_OPS = frozenset(
    {Op.QUERY.value, Op.FETCH.value, Op.LIST_VECTORS.value, Op.COUNT_VECTORS.value}
)
_NOT_OWNER = "tenant is not owned by this worker at that epoch"


DEFAULT_MEMORY_BUDGET_BYTES = 1024 * 1024 * 1024
MEMORY_CHECK_INTERVAL_S = 0.25


class WorkerService:
    """Turns one request frame into one reply; safe to call concurrently."""

    def __init__(
        self,
        registry: TenantRegistry,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
        memory_check_interval_s: float = MEMORY_CHECK_INTERVAL_S,
        cold_dir: Path | None = None,
        min_free_bytes: int | None = None,
        fair_share: FairShare | None = None,
        backups: BackupStore | None = None,
        query_batch: int = DEFAULT_QUERY_BATCH,
    ) -> None:
        self.registry = registry
        # Queries searched with one FAISS call at most (micro-batching; 1: none).
        self.query_batch = max(query_batch, 1)
        self.backups = backups or LocalBackupStore(registry.hot_dir.parent / "backups")
        self.space = SpaceGuard(registry.hot_dir, cold_dir, min_free_bytes)
        # Request threads are handed out by the fair share, so the pool never queues.
        self.fair_share = fair_share or FairShare()
        # One FAISS (OpenMP) thread per request thread, also where OMP_NUM_THREADS is
        # unset: OpenMP's thread count is per thread, the main thread's does not carry.
        # FAISS itself is loaded only once a collection needs it (workers.faiss_runtime).
        self._threads = ThreadPoolExecutor(
            self.fair_share.slots, thread_name_prefix="request", initializer=one_openmp_thread
        )
        self.mover = TenantMover(registry.hot_dir, cold_dir, registry.options.compact_bytes)
        self.ownership = Ownership()
        self.memory_budget_bytes = memory_budget_bytes
        self._check_interval = memory_check_interval_s
        self._last_check = -math.inf  # never (monotonic time can be small after a boot)
        self._last_use: OrderedDict[str, float] = OrderedDict()  # least recent first
        self._evicting = False
        self._background: set[asyncio.Task[int]] = set()
        self.unloads = 0
        # Tenants given up when the ownership lease ran out, told to the coordinator at the
        # next hello (it may otherwise believe they are still here).
        self.released_on_expiry: list[str] = []

    @property
    def tenant_count(self) -> int:
        """Tenants currently assigned to this worker."""
        return len(self.ownership.epochs)

    def held(self) -> dict[str, int]:
        """Tenant -> epoch of everything this worker owns (reported in every heartbeat)."""
        return dict(self.ownership.epochs)

    async def handle(self, frame: Frame, budget: WorkBudget | None = None) -> Reply:
        """Run the frame's operation and build its reply (never raises).

        ``budget`` (default: from the frame's ``deadline_ms``) bounds a query's or a
        filtered delete's work; the reply reports its cost, refusals included (work
        stopped at the deadline was still done).
        """
        rid = frame.header.get("rid", 0)
        if not isinstance(rid, int) or isinstance(rid, bool):
            rid = 0
        budget = budget or WorkBudget.from_header(frame.header)
        try:
            op = frame.op
            if op == Op.ASSIGN:
                result = await self._assign(frame.header)
                return reply_ok(rid, result), {}
            if op == Op.RELEASE:
                await self._release(frame.header)
                return reply_ok(rid), {}
            if op in STORAGE_OPS:
                return reply_ok(rid, await self._storage(op, frame.header)), {}
            if op in DATA_OPS:
                result, arrays = await self._data(op, frame, budget)
                if budget.cost:
                    result = {**result, "cost": budget.cost}
                return reply_ok(rid, result), arrays
            return reply_error(rid, ErrorCode.INVALID, f"unknown op {op[:40]!r}"), {}
        except Exception as exc:
            return _refusal(rid, frame.op, exc, budget), {}

    def handle_now(self, frame: Frame) -> Reply | None:
        """A quick query (see ``answer_now``) answered synchronously, or None."""
        return self.answer_now([(frame, WorkBudget.from_header(frame.header))])[0]

    def answer_now(self, batch: list[tuple[Frame, WorkBudget]]) -> list[Reply | None]:
        """Quick queries answered synchronously, batched (see ``workers.query_batch``).

        Called by the session on the event loop with the QUERY frames that have arrived:
        no task, no gate and no thread, since nothing can change ownership while it
        runs. None means the frame takes the usual way (``handle``), which also gives
        every refusal of ownership or lease.
        """
        replies: list[Reply | None] = [None] * len(batch)
        items: list[QuickQuery] = []
        tenants: set[str] = set()
        for i, (frame, budget) in enumerate(batch):
            header = frame.header
            tenant = header.get("tenant")
            if not self.ownership.owns(tenant, header.get("epoch")):
                continue
            assert isinstance(tenant, str)
            if not self.ownership.gate(tenant).open_for_data:
                continue
            tenants.add(tenant)
            store = self.registry.loaded(tenant)
            if store is None:
                continue
            try:
                collection, args = parse_quick(store, frame)
            except WouldBlock:
                continue
            except Exception as exc:
                replies[i] = _refusal(_rid(header), frame.op, exc, budget), {}
                continue
            items.append(QuickQuery(i, tenant, collection, budget=budget, **args))
        if items:
            activity = self.registry.options.maintenance.activity
            activity.began()
            try:
                answers = run_batches(items, self.query_batch, self.fair_share.charge)
            finally:
                activity.ended()
            for item in items:
                answer = answers.get(item.index)
                if answer is None:
                    continue
                rid, budget = _rid(batch[item.index][0].header), item.budget
                if isinstance(answer, Exception):
                    replies[item.index] = _refusal(rid, Op.QUERY, answer, budget), {}
                    continue
                result, arrays = answer
                header = reply_ok(rid, result)
                if budget.cost:  # last, as in handle's replies
                    header["cost"] = budget.cost
                replies[item.index] = header, arrays
        for tenant in tenants:
            self._used(tenant)
        return replies

    async def settled(self) -> None:
        """Return once the memory-budget checks started in the background have finished."""
        if self._background:
            await asyncio.wait(set(self._background))

    async def release_all(self) -> None:
        """Give up every tenant (on disconnect or shutdown), after their running requests."""
        await self.settled()
        for tenant in list(self.ownership.epochs):
            async with self.ownership.gate(tenant).change():
                self.ownership.epochs.pop(tenant, None)
                await asyncio.to_thread(self.registry.release, tenant)
        await asyncio.to_thread(self.registry.release_all)

    async def _storage(self, op: str, header: dict[str, Any]) -> dict[str, Any]:
        """Move a released tenant between hot and cold, describe it, or delete its cold copy."""
        tenant = check_tenant_id(header.get("tenant"))
        if op == Op.TENANT_SUMMARY:
            return await asyncio.to_thread(self.mover.describe, tenant)
        if op == Op.DIGEST_TENANT:
            return {"files": await asyncio.to_thread(self.mover.digests, tenant)}
        async with self.ownership.gate(tenant).change():
            if tenant in self.ownership.epochs:
                raise StoreError(ErrorCode.UNAVAILABLE, "tenant is still owned; release it first")
            if op == Op.BACKUP_COLD_TENANT:
                cold = self.mover.cold
                return await asyncio.to_thread(
                    backup_cold, self.mover.hot, cold, tenant, self.backups, header
                )
            if op == Op.DELETE_COLD_TENANT:
                await asyncio.to_thread(self.mover.delete_cold, tenant)
                return {"tenant": tenant}
            keyring = _keyring(header.get("keys"))
            return await asyncio.to_thread(self.mover.move, tenant, header.get("to"), keyring)

    async def _assign(self, header: dict[str, Any]) -> dict[str, Any]:
        tenant = check_tenant_id(header.get("tenant"))
        epoch = _epoch(header.get("epoch"))
        if await asyncio.to_thread(self.mover.is_cold, tenant):
            # Loading would create an empty hot copy next to the paused one.
            raise StoreError(ErrorCode.UNAVAILABLE, TENANT_PAUSED_MESSAGE)
        keyring = _keyring(header.get("keys"))
        async with self.ownership.gate(tenant).change():
            await asyncio.to_thread(self.registry.set_keys, tenant, keyring)
            await asyncio.to_thread(self.registry.open, tenant)
            self.ownership.epochs[tenant] = epoch
        return {"tenant": tenant, "epoch": epoch, "key_version": _version(keyring)}

    async def _release(self, header: dict[str, Any]) -> None:
        tenant = check_tenant_id(header.get("tenant"))
        epoch = _epoch(header.get("epoch"))
        async with self.ownership.gate(tenant).change():
            current = self.ownership.epochs.get(tenant)
            if current is None:
                return
            if current != epoch:
                raise StoreError(ErrorCode.NOT_OWNER, _NOT_OWNER)
            del self.ownership.epochs[tenant]
            self._last_use.pop(tenant, None)
            await asyncio.to_thread(self.registry.release, tenant)

    async def _data(self, op: str, frame: Frame, budget: WorkBudget) -> Reply:
        tenant, epoch = frame.header.get("tenant"), frame.header.get("epoch")
        # Checked before anything else, so a stray frame never creates or opens a file.
        if not self.ownership.owns(tenant, epoch):
            raise StoreError(ErrorCode.NOT_OWNER, _NOT_OWNER)
        assert isinstance(tenant, str)
        if op in GROWING_OPS:  # no thread hop for the others: the check would pass at once
            await asyncio.to_thread(self.space.check_write, op)
        gate = self.ownership.gate(tenant)
        if op == Op.DELETE_TENANT:
            async with gate.change():
                self._recheck(tenant, epoch)
                await asyncio.to_thread(self.registry.delete_tenant, tenant)
            return {}, {}
        handler: Callable[[TenantStore, Frame], Reply]
        if op in (Op.BACKUP_TENANT, Op.RESTORE_TENANT):
            handler = functools.partial(self._backup_op, op)
        else:
            handler = HANDLERS[op]
        if op in BUDGETED:
            handler = functools.partial(BUDGETED[op], budget=budget)
        # Reads keep graph building to one core while they run (see workers.maintenance).
        activity = self.registry.options.maintenance.activity if op in READ_OPS else None
        if activity is not None:
            activity.began(tenant)
        try:
            async with gate.data():
                self._recheck(tenant, epoch)
                if op == Op.QUERY:
                    quick = self._quick_query(tenant, frame, budget)
                    if quick is not None:
                        return quick
                async with self.fair_share.slot(tenant):
                    if op in BUDGETED:
                        budget.check()  # abandoned while it waited for a thread
                    loop = asyncio.get_running_loop()
                    return await loop.run_in_executor(
                        self._threads, lambda: handler(self.registry.open(tenant), frame)
                    )
        finally:
            if activity is not None:
                activity.ended(tenant)
            self._used(tenant)

    def _used(self, tenant: str) -> None:
        """Note the tenant's use (for unloading) and check the memory budget now and then."""
        now = time.monotonic()
        self._last_use[tenant] = now
        self._last_use.move_to_end(tenant)
        if now - self._last_check >= self._check_interval and not self._evicting:
            # In the background: the reply to this request must not wait for unloads.
            self._last_check = now
            task = asyncio.create_task(self.enforce_memory_budget(keep=tenant))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _backup_op(self, op: str, store: TenantStore, frame: Frame) -> Reply:
        act = backup_owned if op == Op.BACKUP_TENANT else restore_owned
        return act(store, self.backups, frame.header), {}

    def _quick_query(
        self, tenant: str, frame: Frame, budget: WorkBudget | None = None
    ) -> Reply | None:
        """A quick query of a loaded collection (a small HNSW search or a small flat
        scan, see Collection.quick_to_search), answered here on the event loop.

        The thread hop costs more than such a search; anything that would wait for a
        lock, read a file or scan exactly returns None and goes to a thread instead.
        """
        store = self.registry.loaded(tenant)
        if store is None:
            return None
        try:
            return handlers.query(store, frame, wait=False, budget=budget)
        except WouldBlock:
            return None

    async def enforce_memory_budget(self, keep: str | None = None) -> int:
        """Unload idle tenants, least recently used first, until under budget; return count.

        An unloaded tenant stays owned (and locked): its next request reloads it from disk,
        using the saved HNSW graph, so the client notices only a slower first request.
        """
        if self._evicting:
            return 0
        self._evicting, self._last_check, unloaded = True, time.monotonic(), 0
        try:
            used = await asyncio.to_thread(lambda: self.registry.memory_bytes)
            for tenant in list(self._last_use):
                if used <= self.memory_budget_bytes:
                    break
                if tenant == keep or tenant not in self.ownership.epochs:
                    continue
                async with self.ownership.gate(tenant).change():
                    if tenant not in self.ownership.epochs:
                        continue
                    held = await asyncio.to_thread(self.registry.tenant_memory, tenant)
                    if held == 0:
                        continue
                    await asyncio.to_thread(self.registry.unload, tenant)
                used -= held
                unloaded += 1
                self.unloads += 1
                log.info("unloaded idle tenant %s (%d bytes) under the memory budget", tenant, held)
        finally:
            self._evicting = False
        return unloaded

    def _recheck(self, tenant: str, epoch: object) -> None:
        # Ownership may have changed while this request waited at the gate.
        if not self.ownership.owns(tenant, epoch):
            raise StoreError(ErrorCode.NOT_OWNER, _NOT_OWNER)


def _refusal(rid: int, op: str, exc: Exception, budget: WorkBudget) -> dict[str, Any]:
    """The reply header for a request that raised ``exc``."""
    if isinstance(exc, StoreError):
        refused = reply_error(rid, exc.code, exc.message)
        return {**refused, "cost": budget.cost} if budget.cost else refused
    if is_out_of_space(exc):
        # The write undid itself (WAL truncated, temp files removed): a clear no.
        log.warning("request %s (%s) hit a full disk: %s", rid, op[:40], exc)
        refusal = out_of_space_error()
        return reply_error(rid, refusal.code, refusal.message)
    log.error("request %s (%s) failed", rid, op[:40], exc_info=exc)
    return reply_error(rid, ErrorCode.INTERNAL, "internal error in worker")


def _rid(header: dict[str, Any]) -> int:
    rid = header.get("rid", 0)
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else 0


def _keyring(value: Any) -> Keyring | None:
    if value is None:
        return None
    try:
        return Keyring.from_wire(value)
    except ValueError as exc:
        raise StoreError(ErrorCode.INVALID, f"malformed data keys: {exc}") from None


def _version(keyring: Keyring | None) -> int | None:
    return None if keyring is None else keyring.current


def _epoch(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreError(ErrorCode.INVALID, "epoch must be a non-negative integer")
    return value
