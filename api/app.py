"""The FastAPI application: routers, error model and middleware, wired from parts."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.admission import AdmissionGate
from api.client_address import DEFAULT_TRUSTED_PROXIES, trusted_proxy_networks
from api.dashboard.context import Dashboard
from api.dashboard.routes import router as dashboard_router
from api.deps import StrictQuery
from api.docs_ui import declare_security, install_docs
from api.errors import ERROR_RESPONSES, install_error_handlers
from api.lean_admin import LeanAdmin, lean_admin_routes
from api.lean_front import LeanFront
from api.lean_query import LeanQuery
from api.lean_upsert import LeanUpsert
from api.middleware import RequestContext, RequestObserver, RequestRecorder
from api.query_desk import QueryDesk
from api.routes import (
    admin_backups,
    admin_clients,
    admin_encryption,
    admin_events,
    admin_history,
    admin_operations,
    admin_operators,
    admin_workers,
    collections,
    health,
    snapshots,
    usage,
    vector_records,
    vectors,
)
from api.routes import (
    metrics as metrics_routes,
)
from api.services import AuditVerify, Services, ServicesApp
from coordinator.accounts import Accounts
from coordinator.accounts.key_policy import IPNetwork
from coordinator.admission import ClientAdmission
from coordinator.backups import BackupService
from coordinator.census import CensusTaker
from coordinator.data_keys import DataKeys
from coordinator.dataplane import DataPlane
from coordinator.history.service import ClientHistory
from coordinator.hub import WorkerHub
from coordinator.metrics import Metrics
from coordinator.pause import PauseService, TenantFiles
from coordinator.rate_limit import RateLimiter
from coordinator.usage import RequestObservers

DESCRIPTION = """A hosted multi-tenant vector database.

Data plane (`/v1`): `Authorization: Bearer vp_<key_id>_<secret>`.
Admin plane (`/admin/v1`): `Authorization: Bearer <VP_ADMIN_TOKEN>`.
Errors: `{"error": {"code", "message", "request_id"}}`.
"""


def create_app(
    *,
    accounts: Accounts,
    dataplane: DataPlane,
    hub: WorkerHub,
    admin_token: str,
    rate_limiter: RateLimiter | None = None,
    scheduler_token: str | None = None,
    usage_meter: RequestObserver | None = None,
    admission: ClientAdmission | None = None,
    refusal_delay_s: float = 0.0,
    trusted_proxies: tuple[IPNetwork, ...] | None = None,
    metrics: Metrics | None = None,
    history: ClientHistory | None = None,
    pause: PauseService | None = None,
    tenant_files: TenantFiles | None = None,
    data_keys: DataKeys | None = None,
    backups: BackupService | None = None,
    census: CensusTaker | None = None,
    audit_verify: AuditVerify | None = None,
    dashboard: Dashboard | None = None,
) -> FastAPI:
    """Build the app around already-constructed coordinator parts.

    Each part is handed to the routes and pages as a dependency (``api/deps.py``);
    the optional ones are None where a process runs without them.
    """
    if metrics is None:
        metrics = Metrics()
        metrics.watch_workers(hub, dataplane.router)
    # Peers whose X-Real-IP / X-Forwarded-For is believed (api/client_address.py).
    if trusted_proxies is None:
        trusted_proxies = trusted_proxy_networks(DEFAULT_TRUSTED_PROXIES)
    services = Services(
        accounts=accounts,
        dataplane=dataplane,
        hub=hub,
        history=history or ClientHistory(accounts.uow),
        metrics=metrics,
        admin_token=admin_token.encode(),
        scheduler_token=scheduler_token.encode() if scheduler_token else None,
        rate_limiter=rate_limiter,
        trusted_proxies=trusted_proxies,
        pause=pause,
        tenant_files=tenant_files,
        data_keys=data_keys,
        backups=backups,
        census=census,
        audit_verify=audit_verify,
        dashboard=dashboard,
    )
    app = ServicesApp(
        services,
        title="VectorPanda",
        version="1.0",
        description=DESCRIPTION,
        docs_url=None,  # api/docs_ui.py serves /docs from the package
        redoc_url=None,
        # /metrics is ours; FastAPI's own OpenTelemetry hooks would only cost every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # Paths are matched exactly: a trailing slash is a 404, never a redirect.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    install_docs(app)
    declare_security(app)
    probe_errors: dict[int | str, dict[str, Any]] = {s: ERROR_RESPONSES[s] for s in (422, 500)}
    app.include_router(health.router, dependencies=[StrictQuery], responses=probe_errors)
    for module in (collections, vectors, usage, admin_clients, admin_events, admin_workers):
        app.include_router(module.router, dependencies=[StrictQuery], responses=ERROR_RESPONSES)
    app.include_router(metrics_routes.router, dependencies=[StrictQuery])
    for module in (
        admin_operations,
        vector_records,
        admin_operators,
        admin_history,
        admin_backups,
        snapshots,
        admin_encryption,
    ):
        app.include_router(module.router, dependencies=[StrictQuery], responses=ERROR_RESPONSES)
    if os.environ.get("VP_TEST_HOOKS") == "1":  # fault injection for the test suite only
        from api.routes import test_hooks

        app.include_router(test_hooks.router)
    # Pages under /login and /dashboard (not configured where ``dashboard`` is None).
    app.include_router(dashboard_router)
    app.add_middleware(LeanAdmin, routes=lean_admin_routes(admin_clients.router))
    observer = metrics if usage_meter is None else RequestObservers(metrics, usage_meter)
    max_body_bytes = dataplane.limits.max_body_bytes
    app.add_middleware(
        RequestContext,
        max_body_bytes=max_body_bytes,
        metrics=observer,
        on_defect=metrics.observe_defect,
    )
    # Admitted valid queries are answered from the gate, without FastAPI's per-request work
    # or Starlette's stack; the route stays the reference (and the OpenAPI description).
    query_route, upsert_route = (
        next(r for r in vectors.router.routes if isinstance(r, APIRoute) and r.path == path)
        for path in (vectors.QUERY_PATH, vectors.UPSERT_PATH)
    )
    app.query_desk = QueryDesk(dataplane.limits)
    lean_front = LeanFront(
        app.behind_front,
        query=LeanQuery(dataplane=dataplane, route=query_route),
        recorder=RequestRecorder(max_body_bytes, observer, metrics.observe_defect),
        desk=app.query_desk,
        # Binary upserts, and large JSON ones (parsed by the desk too, off the event loop).
        upsert=LeanUpsert(dataplane=dataplane, route=upsert_route),
    )
    # The data plane's front: outside Starlette's middleware stack, so a refusal costs
    # only itself (it does RequestContext's part for the requests it refuses).
    app.front = AdmissionGate(
        lean_front,
        authenticate=accounts.authenticate,
        rate_limiter=rate_limiter,
        admission=admission or ClientAdmission(max_running=64, max_waiting=256),
        refusal_delay_s=refusal_delay_s,
        trusted_proxies=trusted_proxies,
        max_body_bytes=max_body_bytes,
        refused_counts=metrics.refused,
        usage=usage_meter,
        on_defect=metrics.observe_defect,
    )
    return app
