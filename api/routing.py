"""Request parsing and response rendering on the hot path (orjson, once, at the edge)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class _NonStandardToken(ValueError):
    """NaN, Infinity or -Infinity: accepted by Python's json module, not by JSON."""


def _refuse_constant(token: str) -> Any:
    raise _NonStandardToken(token)


class BodyRefused(HTTPException):
    """A body that is not strict JSON (an HTTPException, so FastAPI's body parsing keeps it)."""


def strict_json(body: bytes) -> Any:
    """Parse standard JSON only: no NaN/Infinity, valid UTF-8 strings, bounded nesting.

    orjson is strict already; the stdlib only runs on the error path, to tell the
    client which rule the body broke: malformed JSON is a 400, well-formed JSON
    that breaks the rules of the contract is a 422.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
    if "surrogate" in reason or "UTF-8" in reason:
        raise BodyRefused(422, "strings must be valid UTF-8 (no lone UTF-16 surrogates)")
    if "depth limit" in reason:
        raise BodyRefused(422, "the body is nested too deeply")
    if "infinity" in reason:
        raise BodyRefused(422, "numbers must be finite (within the range of a double)")
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except _NonStandardToken as token:
        raise BodyRefused(
            422, f"standard JSON only: {token} is not a JSON value (numbers must be finite)"
        ) from None
    except (ValueError, RecursionError):
        pass
    raise BodyRefused(400, "The request body is not valid JSON.")


class OrjsonRequest(Request):
    """Parses bodies with :func:`strict_json`, once."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json(await self.body())
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


class PartsResponse(Response):
    """A JSON answer rendered in parts (as api/routes/vectors.fetch_answer makes them):
    one Content-Length, the parts sent one after the other as the body, never joined
    into one more copy."""

    media_type = "application/json"

    def __init__(self, parts: list[bytes], status_code: int = 200) -> None:
        self.parts = parts
        length = str(sum(len(part) for part in parts))
        super().__init__(None, status_code=status_code, headers={"content-length": length})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})
