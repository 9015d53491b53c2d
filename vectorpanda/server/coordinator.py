"""Composition root: builds each process's parts from one Settings object."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.client_address import trusted_proxy_networks
from api.dashboard.context import Dashboard
from api.services import ServicesApp
from coordinator.accounts import Accounts
from coordinator.accounts.uow import SqliteUnitOfWork
from coordinator.admission import ClientAdmission, SharedRecentClients
from coordinator.backups import BackupService, WorkerTenantBackups
from coordinator.census import CensusTaker
from coordinator.cost_watch import CostWatch, IsolationPolicy
from coordinator.data_keys import DataKeys
from coordinator.dataplane import DataPlane, Limits
from coordinator.encryption_duty import EncryptionDuty
from coordinator.fencing import fence_local_worker
from coordinator.follower import FollowerPlacement, LeaderClient
from coordinator.health import HealthPolicy, HealthTracker
from coordinator.hub import Fencer, WorkerHub
from coordinator.key_wrapping import LocalKeyWrapper
from coordinator.leader import Leadership
from coordinator.list_cursor import ListCursors
from coordinator.membership import GroupMembership, SplitRateLimiter
from coordinator.metrics import Metrics
from coordinator.pause import PauseService, WorkerTenantFiles
from coordinator.rate_limit import RateLimiter, cost_tokens
from coordinator.router import CONTENDED_WINDOW_S, TenantRouter
from coordinator.shared_limits import SharedRateLimiter
from coordinator.storage_watch import StorageWatch
from coordinator.tenant_figures import census_figures, stored_figures
from coordinator.usage import UsageMeter
from eventlog.anchors import HeadAnchorer
from vectorpanda.control_db import control_engine, database_url
from vectorpanda.process_setup import require_secret, warn_if_shared
from vectorpanda.server.dashboard import build_dashboard
from vectorpanda.server.events import (
    EventServices,
    anchor_email,
    audit_verifier,
    build_event_services,
    tenant_unavailable_alert,
)
from vectorpanda.server.http_protocol import HeldHeadHttpToolsProtocol
from vectorpanda.server.run_files import rate_limit_table, run_dir
from vectorpanda.settings import Settings
from vectorpanda.startup_migration import ensure_schema_in_helper
from workers.backup_store import LocalBackupStore
from workers.heap import keep_large_blocks_mapped

log = logging.getLogger("vectorpanda")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_body_bytes=settings.max_body_bytes,
        max_dimension=settings.max_dimension,
        max_upsert_vectors=settings.max_upsert_vectors,
        max_query_vectors=settings.max_query_vectors,
        max_ids_per_request=settings.max_ids_per_request,
        max_top_k=settings.max_top_k,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_filter_depth=settings.max_filter_depth,
        max_filter_operands=settings.max_filter_operands,
    )


@dataclass
class CoordinatorParts:
    """Everything the coordinator process runs."""

    settings: Settings
    accounts: Accounts
    hub: WorkerHub
    router: TenantRouter
    dataplane: DataPlane
    metrics: Metrics
    meter: UsageMeter
    pause: PauseService
    app: FastAPI
    data_keys: DataKeys | None = None
    dashboard: Dashboard | None = None
    events: EventServices | None = None


def build_data_keys(settings: Settings, accounts: Accounts) -> DataKeys | None:
    """Clients' data keys under the master key; None (plaintext at rest) if none is set."""
    if settings.master_key is None or not settings.master_key.get_secret_value():
        log.warning(
            "VP_MASTER_KEY is not set: tenant data is written unencrypted; put it in the "
            "env file (%s/vectorpanda.env, mode 0600) to encrypt each client's data",
            settings.data_dir,
        )
        return None
    secrets = [settings.master_key.get_secret_value()]
    if settings.master_key_old is not None and settings.master_key_old.get_secret_value():
        secrets.append(settings.master_key_old.get_secret_value())
    return DataKeys(accounts.uow, LocalKeyWrapper(secrets))


def charge_to(limiter: RateLimiter | None) -> Callable[[str, int], None]:
    """The router's cost hook: a worker's reported work charged to the client's bucket."""
    if limiter is None:
        return lambda tenant, cost: None
    return lambda tenant, cost: limiter.charge(tenant, cost_tokens(cost))


def build_coordinator(
    settings: Settings,
    fencer: Fencer | None = None,
    leadership: Leadership | None = None,
    membership: GroupMembership | None = None,
) -> CoordinatorParts:
    """Wire the coordinator: accounts (event store), worker hub, router, API.

    ``fencer`` kills a silent worker before its tenants are handed on; whoever supervises
    the workers gives it (``vectorpanda up``), otherwise ``VP_FENCE_LOCAL_WORKERS`` decides.
    ``leadership``: this process is a member of a coordinator group (server/group.py); it
    places tenants only while it leads, and otherwise asks the leader.
    ``membership``: the group's rows in PostgreSQL (members on several hosts): followers
    find the leader there, and a client's rate is split over the live rate domains.
    """
    # Bulk upserts pass through as large request bodies and arrays: keep those on mmap
    # so the heap gives them back (measured: +12 MiB kept after a 100k x 384 import).
    keep_large_blocks_mapped()
    admin_token = require_secret(settings, "admin_token")
    pepper = require_secret(settings, "key_pepper")
    worker_secret = require_secret(settings, "worker_secret")
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    warn_if_shared(settings.data_dir)
    engine = control_engine(settings)
    # A database to create or upgrade is migrated by a helper process: Alembic stays out
    # of this one (about 11 MiB for its whole life, vectorpanda/startup_migration.py).
    ensure_schema_in_helper(engine, database_url(settings), settings.control_db)
    uow = SqliteUnitOfWork(engine)
    accounts = Accounts.with_unit_of_work(uow, pepper.encode(), settings.key_cache_size)
    if fencer is None and settings.fence_local_workers:
        fencer = fence_local_worker
    leading = None if leadership is None else (lambda: leadership.is_leader)
    hub = WorkerHub(worker_secret, fencer, leading)
    follower = None
    if leadership is not None:
        where = leadership.address_file if membership is None else membership.leader_url
        follower = FollowerPlacement(hub, LeaderClient(where, worker_secret))
    data_keys = build_data_keys(settings, accounts)
    rate_limiter: RateLimiter | None = None
    if settings.rate_limits and settings.coordinator_processes > 1:
        # buckets shared by the coordinator processes of `vectorpanda up`
        rate_limiter = SharedRateLimiter(rate_limit_table(settings))
    elif settings.rate_limits:
        rate_limiter = RateLimiter()
    if rate_limiter is not None and membership is not None:
        # members on several hosts: each rate domain enforces its share of a client's rate
        rate_limiter = SplitRateLimiter(rate_limiter, membership.domains)
    recent_clients = None
    if settings.coordinator_processes > 1:
        # who was served lately, in any coordinator process (pacing of filtered requests)
        recent_clients = SharedRecentClients(
            run_dir(settings) / "recent-clients", CONTENDED_WINDOW_S
        )
    router = TenantRouter(
        hub,
        settings.request_timeout_s,
        settings.tenant_unavailable_alert_s,
        filtered_in_flight=settings.client_max_filtered_running,
        cost_watch=CostWatch(
            IsolationPolicy(settings.rebalance_busy_threads, settings.rebalance_cooldown_s)
        ),
        on_unservable_alert=tenant_unavailable_alert(settings),
        # A tenant is its client: the work a worker reports is charged to that client.
        charge_cost=charge_to(rate_limiter),
        tenant_keys=data_keys.keyring_for if data_keys is not None else None,
        leading=leading,
        follower=follower,
        recent_clients=recent_clients,
    )
    limits = limits_from(settings)
    # Stored figures are read through a plain data plane: reading them is not usage.
    meter = UsageMeter(accounts, stored_figures(DataPlane(router, limits)))
    dataplane = DataPlane(
        router, limits, cursors=ListCursors.from_pepper(pepper.encode()), metering=meter
    )
    files = WorkerTenantFiles(router)
    scheduler_token = (
        settings.scheduler_token.get_secret_value() if settings.scheduler_token else None
    )
    anchorer = None
    if settings.anchor_signing_key is not None:
        anchorer = HeadAnchorer(
            settings.anchor_signing_key.get_secret_value(), settings.anchors_dir
        )
    backups = BackupService(
        accounts,
        WorkerTenantBackups(router),
        LocalBackupStore(settings.backups),
        anchorer,
        data_keys=data_keys,
    )
    census = CensusTaker(
        accounts,
        settings.archive,
        census_figures(dataplane, files),
        flush_usage=meter.flush,
        anchorer=anchorer,
        on_anchor=anchor_email(settings) if settings.anchor_email else None,
    )
    metrics = Metrics()
    metrics.watch_workers(hub, router)
    events = build_event_services(settings, accounts, metrics.count_dead_letter)
    on_server = database_url(settings) is not None
    # On PostgreSQL the audit tables are in the control database itself.
    metrics.watch_event_log(
        events.store.engine if on_server else settings.control_db,
        events.store.engine if on_server else settings.audit_db,
    )
    pause = PauseService(accounts, files)
    dashboard = build_dashboard(settings)
    app = create_app(
        accounts=accounts,
        dataplane=dataplane,
        hub=hub,
        admin_token=admin_token,
        rate_limiter=rate_limiter,
        scheduler_token=scheduler_token,
        usage_meter=meter,
        admission=ClientAdmission(settings.client_max_running, settings.client_max_waiting),
        refusal_delay_s=settings.refusal_delay_s,
        trusted_proxies=trusted_proxy_networks(settings.trusted_proxies),
        metrics=metrics,
        pause=pause,
        tenant_files=files,
        data_keys=data_keys,
        backups=backups,
        census=census,
        audit_verify=audit_verifier(settings, events.store),
        dashboard=dashboard,
    )
    return CoordinatorParts(
        settings,
        accounts,
        hub,
        router,
        dataplane,
        metrics,
        meter,
        pause,
        app,
        data_keys=data_keys,
        dashboard=dashboard,
        events=events,
    )


async def serve_coordinator(
    parts: CoordinatorParts,
    stop: asyncio.Event,
    on_ready: Callable[[int, int], Awaitable[None]] | None = None,
) -> None:
    """Run the worker hub and the HTTP API until ``stop`` is set."""
    settings = parts.settings
    hub_port = await parts.hub.start(settings.hub_host, settings.hub_port)
    server = quiet_server(parts.app, host=settings.host, port=settings.port)
    serving = asyncio.create_task(server.serve())
    eventing = asyncio.create_task(parts.events.run(stop)) if parts.events else None
    policy = HealthPolicy(interval_s=settings.heartbeat_interval_s)
    tracker = HealthTracker(parts.hub, policy, parts.router, settings.rebalance_interval_s)
    tracking = asyncio.create_task(tracker.run(stop))
    duties_stop = asyncio.Event()  # set after the HTTP server stopped: last usage is counted
    duties = [
        asyncio.create_task(parts.pause.run(duties_stop), name="pause-reconcile"),
        asyncio.create_task(parts.meter.run(duties_stop, settings.usage_flush_s), name="usage"),
        asyncio.create_task(
            StorageWatch(parts.hub, parts.accounts).run(duties_stop), name="storage-watch"
        ),
        asyncio.create_task(
            parts.accounts.key_uses.run(duties_stop, settings.key_use_flush_s), name="key-uses"
        ),
    ]
    if parts.data_keys is not None:
        duty = EncryptionDuty(
            parts.data_keys,
            parts.dataplane,
            parts.accounts,
            settings.data_dir,
            parts.router.any_worker_live,
        )
        duties.append(asyncio.create_task(duty.run(duties_stop), name="encryption"))
    try:
        while not server.started:
            if serving.done():
                await serving  # surfaces the bind error
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.05)
        _freeze_startup_heap()
        if on_ready is not None:
            await on_ready(_bound_port(server, settings.port), hub_port)
        await stop.wait()
    finally:
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        duties_stop.set()  # the usage meter flushes once more on its way out
        await asyncio.gather(*duties, return_exceptions=True)
        if eventing is not None:
            await _finish(eventing, stop)
        tracking.cancel()
        await asyncio.gather(tracking, return_exceptions=True)
        await parts.hub.close()
        await parts.accounts.close()
        if parts.dashboard is not None:
            parts.dashboard.close()
        if isinstance(parts.app, ServicesApp) and parts.app.query_desk is not None:
            parts.app.query_desk.close()


def _freeze_startup_heap() -> None:
    """Keep the cyclic GC off what startup built (modules, the app, its routes and models).

    Those objects live as long as the process; scanned at every full collection, they
    made the GC about a fifth of the coordinator's CPU under a stream of admin actions.
    Frozen, collections scan only what requests allocate.
    """
    gc.collect()
    gc.freeze()


async def _finish(task: asyncio.Task[None], stop: asyncio.Event, grace_s: float = 10.0) -> None:
    """Let a service task wind down after ``stop``; cancel it if it does not."""
    stop.set()
    done, _ = await asyncio.wait([task], timeout=grace_s)
    if not done:
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class _QuietServer(uvicorn.Server):
    """The launcher owns signal handling; uvicorn must not install its own."""

    def install_signal_handlers(self) -> None:
        return None


def quiet_server(app: Any, **where: Any) -> _QuietServer:
    """A uvicorn server for one of our ASGI apps: no access log, lifespan, websockets or
    server header, and no signal handlers; ``where`` is ``host``/``port`` (or none, for
    a socket handed to ``serve``)."""
    return _QuietServer(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            # The client address is ours to decide (api/client_address.py, VP_TRUSTED_PROXIES).
            proxy_headers=False,
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=10,
            # An answer's head and body in one write (vectorpanda/server/http_protocol.py).
            http=HeldHeadHttpToolsProtocol,
            **where,
        )
    )


def _bound_port(server: uvicorn.Server, default: int) -> int:
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets:
            return int(sock.getsockname()[1])
    return default
