"""``/docs``: the API reference UI, served from the installed package, never from a CDN.

The Swagger UI assets come from the ``fastapi-offline`` distribution (pinned in
the lock file), so the page works on a machine with no internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs/assets"


def install_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Serve ``/docs`` and its assets (call with ``docs_url=None`` on the app)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API reference",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.add_api_route("/docs", docs, include_in_schema=False, methods=["GET"])


SECURITY_SCHEMES = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A data-plane key: `vp_<key_id>_<secret>`, issued by the operators.",
    },
    "AdminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (`VP_ADMIN_TOKEN` in the data directory's env file).",
    },
}


def security_for(path: str) -> list[dict[str, list[str]]]:
    """Which credential a path takes: a data key, the admin token, or none (public)."""
    if path.startswith("/v1/"):
        return [{"ApiKey": []}]
    if path.startswith("/admin/v1/"):
        return [{"AdminToken": []}]
    return []


def declare_security(app: FastAPI) -> None:
    """Add the two bearer schemes to the OpenAPI document, and each operation's requirement."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                if isinstance(operation, dict):
                    operation["security"] = security_for(path)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
