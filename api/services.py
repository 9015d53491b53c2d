"""The parts the routes and pages use, as one value carried by the app.

The composition root (``vectorpanda.server``) builds the coordinator's parts
and passes them to ``create_app(...)``, which keeps them in one
:class:`Services` on the :class:`ServicesApp` it builds. Routes and pages never
read it themselves: they declare ``Annotated`` dependencies from ``api/deps.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.dashboard.context import Dashboard
from coordinator.accounts import Accounts
from coordinator.accounts.key_policy import IPNetwork
from coordinator.backups import BackupService
from coordinator.census import CensusTaker
from coordinator.data_keys import DataKeys
from coordinator.dataplane import DataPlane
from coordinator.history.service import ClientHistory
from coordinator.hub import WorkerHub
from coordinator.metrics import Metrics
from coordinator.pause import PauseService, TenantFiles
from coordinator.rate_limit import RateLimiter
from eventlog.hashchain import ChainReport

if TYPE_CHECKING:  # api/query_desk.py imports the routes, which import this
    from api.query_desk import QueryDesk

AuditVerify = Callable[[], Awaitable[ChainReport]]


@dataclass(frozen=True, kw_only=True)
class Services:
    """The coordinator's parts the routes and pages use, built by the composition root.

    The optional ones are None in a process (or a test) that runs without them;
    their routes answer 503 (the dashboard's pages: "not configured").
    """

    accounts: Accounts
    dataplane: DataPlane
    hub: WorkerHub
    history: ClientHistory
    metrics: Metrics
    admin_token: bytes
    # The scheduler's own admin token: same powers, recorded as actor "scheduler".
    scheduler_token: bytes | None = None
    rate_limiter: RateLimiter | None = None
    # Peers whose X-Real-IP / X-Forwarded-For is believed (api/client_address.py).
    trusted_proxies: tuple[IPNetwork, ...] = ()
    pause: PauseService | None = None
    tenant_files: TenantFiles | None = None
    data_keys: DataKeys | None = None
    backups: BackupService | None = None
    census: CensusTaker | None = None
    # The chain plus the audit tables against a replay; None checks the chain alone.
    audit_verify: AuditVerify | None = None
    dashboard: Dashboard | None = None
    # Data-key rotations running in the background (kept so they are not collected).
    rotations: set[asyncio.Task[Any]] = field(default_factory=set)


class ServicesApp(FastAPI):
    """The FastAPI app with the :class:`Services` it was built with.

    ``front``, when set, is the ASGI callable the server reaches first (the data
    plane's admission gate, api/admission.py): it answers what it refuses itself,
    in front of Starlette's middleware stack, and passes the rest on: an admitted
    query to its lean handler (api/lean_front.py), everything else to ``behind_front``.
    """

    def __init__(self, services: Services, **settings: Any) -> None:
        super().__init__(**settings)
        self.services = services
        self.front: ASGIApp | None = None
        # Large query bodies' parser (api/query_desk.py); the server closes it on exit.
        self.query_desk: QueryDesk | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def behind_front(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app without its front: FastAPI's own entry point."""
        await super().__call__(scope, receive, send)


def services_of(request: Request) -> Services:
    services: Services = request.app.services
    return services
