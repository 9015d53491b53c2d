"""Request parsing and response rendering on the hot path (orjson, once, at the edge)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class OrjsonRequest(Request):
    """Parses bodies with orjson; falls back to the stdlib for NaN/Infinity tokens.

    The fallback lets a body carrying NaN or Infinity reach validation, which
    answers 422 (non-finite value) rather than 400 (malformed JSON).
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class OrjsonRoute(APIRoute):
    """An APIRoute whose handler sees an OrjsonRequest."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return route_handler


def json_response(content: Any, status_code: int = 200) -> Response:
    """Render with orjson (numpy arrays included) into a plain Response."""
    return Response(
        orjson.dumps(content, option=JSON_OPTIONS),
        status_code=status_code,
        media_type="application/json",
    )
