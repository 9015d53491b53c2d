"""The dashboard's router: login, the client view, the operator view and the stylesheet."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.dashboard import client_pages, login, operator_pages

STATIC = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)
router.include_router(login.router)
router.include_router(client_pages.router)
router.include_router(operator_pages.router)


@router.get("/dashboard/static/style.css")
async def stylesheet() -> FileResponse:
    return FileResponse(
        STATIC / "style.css",
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
