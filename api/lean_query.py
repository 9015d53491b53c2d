"""The lean query path: ``POST /v1/collections/{name}/query`` without FastAPI's per-request work.

The route in api/routes/vectors.py stays the reference (and the OpenAPI description);
:class:`LeanQuery` answers the requests it can prove valid with the same checks in the
same order, and every other one goes to that route unchanged (its body replayed), so the
answers are the same byte for byte, errors included (tests/integration/test_query_golden.py).
What it skips per request: dependency solving, the pydantic model of the body, the Match
objects and the second JSON encoding (the worker renders the answer). It is served
straight from the admission gate (api/lean_front.py), before Starlette's middleware
stack and routing.

It also takes the binary query format (api/binary_query.py) when the request says
``Content-Type: application/x-vectorpanda``, and answers in the binary answer format
(workers/query_answer.py, ``render_binary``) when ``Accept`` prefers
``application/x-vectorpanda`` (see ``wants_binary``); JSON stays the default, and
errors are always the usual JSON error body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope

from api.binary_query import BINARY_TYPE, parse_binary_query
from api.middleware import BodyTooLarge
from api.query_parse import CheckedFilter, parse_json_query
from api.routes.vectors import query_matrix
from coordinator.accounts.model import Principal
from coordinator.dataplane import DataPlane
from coordinator.errors import TenantUnavailable

PREFIX = "/v1/collections/"
SUFFIX = "/query"
JSON_TYPE = b"application/json"
T = TypeVar("T")


def wants_binary(accept: bytes | None) -> bool:
    """Whether ``Accept`` asks for the binary answer: ``application/x-vectorpanda`` listed
    (by name, not by a wildcard) with a quality at least that of JSON's."""
    if not accept or BINARY_TYPE not in accept:
        return False
    # A client sends the same Accept with every query: parsed once per distinct value.
    known = _ACCEPT_SEEN.get(accept)
    if known is None:
        known = _prefers_binary(accept)
        if len(_ACCEPT_SEEN) < _MAX_ACCEPT_SEEN and len(accept) <= _MAX_ACCEPT_LENGTH:
            _ACCEPT_SEEN[accept] = known
    return known


_ACCEPT_SEEN: dict[bytes, bool] = {}
_MAX_ACCEPT_SEEN = 256
_MAX_ACCEPT_LENGTH = 256


def _prefers_binary(accept: bytes) -> bool:
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


class Disconnected(Exception):
    """The client went away while sending its body."""


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """The whole body; BodyTooLarge as soon as it passes ``limit`` (as the request
    context's capped receive), Disconnected if the client leaves first."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        chunk: bytes = message.get("body", b"")
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise BodyTooLarge()
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


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


# An answer back sooner needs no watcher: its worker work is done by the time a watcher
# could stop it (a task per query cost ~15 us of the coordinator's CPU, measured with
# benchmarks/query_chain.py). A client that leaves is noticed at most this much later.
WATCH_AFTER_S = 0.05


async def _unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work`` run in this task; cancelled (and 503) if the client disconnects first.

    As api/disconnect.py does, with one task fewer: a watcher cancels this task. It
    starts only once the answer has taken ``WATCH_AFTER_S``.
    """
    me = asyncio.current_task()
    assert me is not None
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        me.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = me.get_loop().call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        me.uncancel()
        raise TenantUnavailable("The client went away before the answer.") from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def collection_posted(scope: Scope, suffix: str) -> str | None:
    """The collection name when this is ``POST /v1/collections/{name}<suffix>``, exactly
    (no query string)."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX) or not path.endswith(suffix):
        return None
    name = path[len(PREFIX) : -len(suffix)]
    return name if name and "/" not in name else None


class LeanRoute:
    """A data-plane route's requests answered from the admission gate (api/lean_front.py)
    without FastAPI; the reference route stays the OpenAPI description."""

    suffix: ClassVar[str]  # of the path, after /v1/collections/{name}

    def __init__(self, *, dataplane: DataPlane, route: BaseRoute) -> None:
        self.dataplane = dataplane
        self.route = route  # the reference route: named in the request log and the metrics

    @classmethod
    def collection(cls, scope: Scope) -> str | None:
        """The collection name when this is ``POST /v1/collections/{name}<suffix>``, exactly."""
        return collection_posted(scope, cls.suffix)


class LeanQuery(LeanRoute):
    """The query route's provably valid requests, answered without FastAPI (its handler;
    api/lean_front.py serves them from the admission gate)."""

    suffix = SUFFIX

    @staticmethod
    def parse(content_type: bytes, body: bytes) -> dict[str, Any]:
        """The query in ``body``: Fallback when the route must answer, BinaryQueryError
        for a binary frame the API refuses."""
        if content_type == BINARY_TYPE:
            return parse_binary_query(body)
        return parse_json_query(body)

    async def answer(
        self,
        principal: Principal,
        name: str,
        query: dict[str, Any],
        receive: Receive,
        binary: bool = False,
    ) -> bytes:
        """The answer's bytes (JSON, or binary when ``binary``), or the API's error raised."""
        dataplane = self.dataplane
        top_k, filter_ = query["top_k"], query["filter"]
        collection, matrix = query_matrix(name, query["rows"], top_k, filter_, dataplane.limits)
        pieces = None
        if isinstance(filter_, CheckedFilter):  # checked and encoded by api/query_desk.py
            pieces = filter_.pieces
            filter_ = filter_.fragment()
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
                filter_pieces=pieces,
                ef_search=query["ef_search"],
                single=query["single"],
                binary=binary,
                spent_s=query.get("parse_s", 0.0),
            ),
        )
