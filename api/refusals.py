"""The admission gate's answers: error bodies from precomputed bytes, and cheap accounting.

A refusal is the one response a flood makes the coordinator send tens of
thousands of times a second, so everything about it that does not depend on the
request is computed once: the JSON error body up to the request id, and the
headers. The body is byte for byte what ``orjson.dumps`` makes of the API's error
format (``{"error": {"code", "message", "request_id"}}``), since a request id is
``[A-Za-z0-9._-]`` only and needs no escaping.

Each refusal is still counted and logged: a plain integer per (method, status)
that ``/metrics`` folds into ``vectorpanda_http_requests{route="unmatched"}``
(coordinator/metrics.py), the client's usage (its rejected requests) where the
client is known, and one request-log line like any request's, made without
``logging``'s per-call work (caller lookup, record construction), which would
otherwise be most of what a refusal costs.
"""

from __future__ import annotations

import logging
import time

import orjson
from starlette.types import Scope, Send

from api.middleware import RequestObserver, log_request, request_log

CONTENT_TYPE = (b"content-type", b"application/json")


class Refusal:
    """One kind of refusal: its status, error code and message, and its headers, ready."""

    __slots__ = ("head", "retry_after", "status")

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        self.status = status
        self.retry_after = (
            None if retry_after is None else (b"retry-after", str(retry_after).encode())
        )
        error = orjson.dumps({"code": code, "message": message})
        # {"error":{"code":…,"message":…,"request_id":"<id>"}}
        self.head = b'{"error":' + error[:-1] + b',"request_id":"'

    def body(self, request_id: str) -> bytes:
        return self.head + request_id.encode() + b'"}}'


class RefusalDesk:
    """Sends refusals, counts them and logs them; shared by a gate's refusal paths."""

    def __init__(
        self,
        counts: dict[tuple[str, int], int] | None = None,
        usage: RequestObserver | None = None,
    ) -> None:
        self.counts: dict[tuple[str, int], int] = {} if counts is None else counts
        self.usage = usage

    async def send(
        self,
        scope: Scope,
        send: Send,
        refusal: Refusal,
        request_id: str,
        started: float,
        client_id: str | None,
    ) -> None:
        body = refusal.body(request_id)
        headers = [
            CONTENT_TYPE,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        if refusal.retry_after is not None:
            headers.append(refusal.retry_after)
        status = refusal.status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        key = (scope.get("method", ""), status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        if client_id is not None and self.usage is not None:
            self.usage.observe_request(scope, status, 0.0)
        if request_log.isEnabledFor(logging.INFO):
            seconds = time.perf_counter() - started
            # refused before routing
            log_request(scope, request_id, client_id, "unmatched", status, seconds)
