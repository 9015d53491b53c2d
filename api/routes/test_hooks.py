"""Fault-injection hooks for the test suite, mounted only when ``VP_TEST_HOOKS=1``.

Never set that variable in production: these routes hurt the service on purpose.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Response

from api.deps import AdminActor
from api.routing import json_response

router = APIRouter(prefix="/admin/v1/test", tags=["test hooks"], include_in_schema=False)
log = logging.getLogger("vectorpanda.test_hooks")

MAX_STALL_S = 30.0


@router.post("/stall")
async def stall_event_loop(actor: AdminActor, seconds: float = 1.0) -> Response:
    """Block the coordinator's event loop, as parsing a huge body would (heartbeats wait)."""
    seconds = min(max(seconds, 0.0), MAX_STALL_S)
    log.warning("test hook: stalling the event loop for %.2f s (asked by %s)", seconds, actor)
    time.sleep(seconds)  # noqa: ASYNC251 - on purpose: this is the stall
    return json_response({"stalled_s": seconds})
