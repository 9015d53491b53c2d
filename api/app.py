"""The FastAPI application: routers, error model and middleware, wired from parts."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.middleware import RequestContext
from api.routes import admin_clients, admin_events, collections, health, usage, vectors
from coordinator.accounts import Accounts
from coordinator.dataplane import DataPlane
from coordinator.hub import WorkerHub

DESCRIPTION = """A hosted multi-tenant vector database.

Data plane (`/v1`): `Authorization: Bearer vp_<key_id>_<secret>`.
Admin plane (`/admin/v1`): `Authorization: Bearer <VP_ADMIN_TOKEN>`.
Errors: `{"error": {"code", "message", "request_id"}}`.
"""


def create_app(
    *, accounts: Accounts, dataplane: DataPlane, hub: WorkerHub, admin_token: str
) -> FastAPI:
    """Build the app around already-constructed coordinator parts."""
    app = FastAPI(
        title="VectorPanda",
        version="1.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.accounts = accounts
    app.state.dataplane = dataplane
    app.state.hub = hub
    app.state.admin_token = admin_token.encode()
    install_error_handlers(app)
    for module in (health, collections, vectors, usage, admin_clients, admin_events):
        app.include_router(module.router)
    app.add_middleware(RequestContext, max_body_bytes=dataplane.limits.max_body_bytes)
    return app
