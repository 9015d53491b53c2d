"""The lean query path: ``POST /v1/collections/{name}/query`` without FastAPI's per-request work.

The route in api/routes/vectors.py stays the reference (and the OpenAPI description);
this ASGI middleware, inside the admission gate, answers the requests it can prove
valid with the same checks in the same order, and hands every other one to that
route unchanged (its body replayed), so the answers are the same byte for byte,
errors included (tests/integration/test_query_golden.py). What it skips per request:
route matching over every route, dependency solving, the pydantic model of the body,
the Match objects and the second JSON encoding (the worker renders the answer).

It also takes the binary query format (api/binary_query.py) when the request says
``Content-Type: application/x-vectorpanda``, and answers in the binary answer format
(workers/query_answer.py, ``render_binary``) when ``Accept`` prefers
``application/x-vectorpanda`` (see ``wants_binary``); JSON stays the default, and
errors are always the usual JSON error body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.binary_query import BINARY_TYPE, BinaryQueryError, parse_binary_query, query_options
from api.errors import error_body, error_parts
from api.routes.vectors import query_matrix
from coordinator.accounts.model import Principal
from coordinator.dataplane import DataPlane
from coordinator.errors import TenantUnavailable
from eventlog.events import Scope as KeyScope

PREFIX = "/v1/collections/"
SUFFIX = "/query"
JSON_TYPE = b"application/json"
_FIELDS = frozenset(
    {"vector", "vectors", "top_k", "filter", "include_metadata", "include_values", "ef_search"}
)
_NUMBERS = frozenset({float, int})

T = TypeVar("T")


class _Fallback(Exception):
    """Not provably valid: the reference route answers."""


def _row(value: Any) -> list[Any]:
    # strict floats: ints and floats, never bools or strings (set(map(type)) is the cheap test)
    if type(value) is not list or not set(map(type, value)) <= _NUMBERS:
        raise _Fallback
    return value


def parse_json_query(body: bytes) -> dict[str, Any]:
    """The body as QueryRequest would accept it (with its defaults), or _Fallback."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Fallback from None
    if type(doc) is not dict or not doc.keys() <= _FIELDS:
        raise _Fallback
    vector, vectors = doc.get("vector"), doc.get("vectors")
    if vector is not None:
        if vectors is not None:
            raise _Fallback
        rows = [_row(vector)]
    elif type(vectors) is list and vectors:
        rows = [_row(v) for v in vectors]
    else:
        raise _Fallback
    options = query_options(doc)
    if options is None:
        raise _Fallback
    return {"rows": rows, "single": vector is not None, **options}


def wants_binary(accept: bytes | None) -> bool:
    """Whether ``Accept`` asks for the binary answer: ``application/x-vectorpanda`` listed
    (by name, not by a wildcard) with a quality at least that of JSON's."""
    if not accept or BINARY_TYPE not in accept:
        return False
    binary = json = 0.0
    for item in accept.split(b","):
        media, _, params = item.partition(b";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if media == BINARY_TYPE:
            binary = max(binary, quality)
        elif media in (JSON_TYPE, b"application/*", b"*/*"):
            json = max(json, quality)
    return binary > 0 and binary >= json


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class _Disconnected(Exception):
    """The client went away while sending its body."""


def replay_body(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the next app: the body already read, then whatever follows."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work`` run in this task; cancelled (and 503) if the client disconnects first.

    As api/disconnect.py does, with one task fewer: a watcher cancels this task.
    """
    me = asyncio.current_task()
    assert me is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        me.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        me.uncancel()
        raise TenantUnavailable("The client went away before the answer.") from None
    finally:
        watcher.cancel()


class LeanQuery:
    """ASGI middleware serving the query route's provably valid requests itself."""

    def __init__(self, app: ASGIApp, *, dataplane: DataPlane, route: BaseRoute) -> None:
        self.app = app
        self.dataplane = dataplane
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = self._collection(scope)
        state = scope.get("state") or {}
        principal: Principal | None = state.get("principal")
        if name is None or principal is None or KeyScope.READ not in principal.scopes:
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        if content_type != JSON_TYPE and content_type != BINARY_TYPE:
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            await self.app(scope, receive, send)  # the route finds the same
            return
        try:
            if content_type == BINARY_TYPE:
                query = parse_binary_query(body)
            else:
                query = parse_json_query(body)
        except _Fallback:
            await self.app(scope, replay_body(body, receive), send)
            return
        except BinaryQueryError as exc:
            query = None
            failure: Exception = exc.as_api_error()
        scope["route"] = self.route  # for the request log and the metrics
        scope["path_params"] = {"name": name}
        request_id = str(state.get("request_id", ""))
        binary = wants_binary(_header(scope, b"accept"))
        try:
            if query is None:
                raise failure
            answer = await self._answer(principal, name, query, receive, binary)
        except Exception as exc:
            parts = error_parts(exc)
            if parts is None:
                raise  # a defect: the request middleware answers 500 and logs it
            status, code, message, retry_after = parts
            await _send(send, status, error_body(status, code, message, request_id), retry_after)
            return
        await _send(send, 200, answer, None, BINARY_TYPE if binary else JSON_TYPE)

    @staticmethod
    def _collection(scope: Scope) -> str | None:
        """The collection name when this is ``POST /v1/collections/{name}/query``, exactly."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            return None
        path: str = scope["path"]
        if not path.startswith(PREFIX) or not path.endswith(SUFFIX):
            return None
        name = path[len(PREFIX) : -len(SUFFIX)]
        return name if name and "/" not in name else None

    async def _answer(
        self,
        principal: Principal,
        name: str,
        query: dict[str, Any],
        receive: Receive,
        binary: bool = False,
    ) -> bytes:
        dataplane = self.dataplane
        top_k, filter_ = query["top_k"], query["filter"]
        collection, matrix = query_matrix(name, query["rows"], top_k, filter_, dataplane.limits)
        return await _unless_disconnected(
            receive,
            dataplane.query_json(
                principal.client_id,
                collection,
                matrix,
                top_k,
                include_metadata=query["include_metadata"],
                include_values=query["include_values"],
                filter=filter_,
                ef_search=query["ef_search"],
                single=query["single"],
                binary=binary,
            ),
        )


async def _send(
    send: Send, status: int, body: bytes, retry_after: int | None, content_type: bytes = JSON_TYPE
) -> None:
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type)]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
