"""ASGI middleware: request ids, body size limit and the JSON request log."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import Protocol

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_log = logging.getLogger("vectorpanda.requests")
defect_log = logging.getLogger("vectorpanda.errors")

# A well-formed request id, the one spelling: deploy/nginx.conf's map uses the same pattern
# (tests/integration/test_compose.py holds the two together).
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{8,128}$"
_REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)


class BodyTooLarge(HTTPException):
    """The streamed body passed the configured limit (an HTTPException so FastAPI keeps it)."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="The request body is over the size limit.")


def well_formed_request_id(value: bytes) -> str | None:
    """An incoming ``X-Request-Id`` header's value, if it is one we keep."""
    candidate = value.decode("latin-1")
    return candidate if _REQUEST_ID_RE.match(candidate) else None


def new_request_id() -> str:
    """A fresh request id: 32 random hex digits, like a uuid4's. It correlates log lines and
    proves nothing, so it comes from the process's seeded generator, not a system call."""
    return f"{random.getrandbits(128):032x}"


# What every request-log record says besides its line (formatters read the record's
# ``__dict__``, so these are copied onto each record, not left on the class).
_REQUEST_LINE_FIXED = {
    "name": request_log.name,
    "levelno": logging.INFO,
    "levelname": "INFO",
    "pathname": __file__,
    "filename": "middleware.py",
    "module": "middleware",
    "lineno": 0,
    "funcName": "request",
    "args": (),
    "exc_info": None,
    "exc_text": None,
    "stack_info": None,
    "relativeCreated": 0.0,
    "thread": None,
    "threadName": None,
    "process": None,
    "processName": None,
    "taskName": None,
}


class _RequestLine(logging.LogRecord):
    """A request-log record made without ``Logger``'s per-call work (the caller's frame,
    thread and process names): the line is all it carries; the rest is fixed."""

    def __init__(self, line: str, created: float) -> None:
        self.__dict__.update(_REQUEST_LINE_FIXED)
        self.msg = line
        self.created = created
        self.msecs = (created - int(created)) * 1000

    def getMessage(self) -> str:
        return str(self.msg)


def write_request_line(line: str, created: float) -> None:
    """Hand one request-log line to the request log's handlers (the caller checked that
    the log is on: ``request_log.isEnabledFor(logging.INFO)``)."""
    request_log.handle(_RequestLine(line, created))


def report_defect(scope: Scope, request_id: str, on_defect: Callable[[Scope], None] | None) -> None:
    """A handler raised what no error handler maps: a defect, never a client error."""
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    defect_log.exception(
        "unhandled exception in %s %s (request %s)", scope.get("method"), route, request_id
    )
    if on_defect is not None:
        try:
            on_defect(scope)
        except Exception:
            defect_log.exception("counting a defect failed")


def _error_body(code: str, message: str, request_id: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})


def too_large_message(max_body_bytes: int | None) -> str:
    return f"The request body is over the limit of {max_body_bytes} bytes."


class _Stamp:
    """The request log's timestamp, formatted once a second, not once a request."""

    second = 0
    text = ""


def log_request(
    scope: Scope,
    request_id: str,
    client_id: str | None,
    route: str,
    status: int,
    seconds: float,
) -> None:
    """One request-log line (every answered request, refused ones included)."""
    now = time.time()
    second = int(now)
    if second != _Stamp.second:
        _Stamp.second = second
        _Stamp.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + "Z"
    record = {
        "ts": _Stamp.text,
        "request_id": request_id,
        "client_id": client_id,
        "route": route,
        "method": scope.get("method"),
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
    }
    write_request_line(orjson.dumps(record).decode(), now)


class RequestObserver(Protocol):
    """Receives every request's outcome (the metrics registry)."""

    def observe_request(self, scope: Scope, status: int, seconds: float) -> None: ...


class RequestRecorder:
    """What every request gets on its way out: one request-log line, its metrics, and the
    JSON error bodies of the request context (413 over the body limit, 500 for a defect).

    Shared by :class:`RequestContext` and the lean query path served from the admission
    gate (api/lean_front.py), so both log, count and answer alike.
    """

    def __init__(
        self,
        max_body_bytes: int,
        metrics: RequestObserver | None = None,
        on_defect: Callable[[Scope], None] | None = None,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.on_defect = on_defect
        self.too_large_message = too_large_message(max_body_bytes)

    def finish(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        """The request's log line and metrics (once it is answered, or failed)."""
        now = time.perf_counter()
        if request_log.isEnabledFor(logging.INFO):
            self._log(scope, request_id, status, now - started)
        if self.metrics is not None:
            self.metrics.observe_request(scope, status, now - started)

    def defect(self, scope: Scope, request_id: str) -> None:
        """An exception escaped the app: logged with its traceback and counted."""
        report_defect(scope, request_id, self.on_defect)

    @staticmethod
    def _log(scope: Scope, request_id: str, status: int, seconds: float) -> None:
        state = scope.get("state")
        log_request(
            scope,
            request_id,
            state.get("client_id") if state else None,
            getattr(scope.get("route"), "path", None) or "unmatched",
            status,
            seconds,
        )


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    id_header: tuple[bytes, bytes] | None = None,
) -> None:
    """The documented error body (``id_header``, when given, ends the headers)."""
    body = _error_body(code, message, request_id)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if id_header is not None:
        headers.append(id_header)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Assigns ``X-Request-Id``, caps body size, and logs one JSON line per request.

    An incoming ``X-Request-Id`` (from nginx) is kept when it is well formed.
    The log line never holds headers, keys or bodies. An exception that escapes
    the app is answered with the documented 500 body, logged with its traceback
    and reported to ``on_defect``.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: RequestObserver | None = None,
        on_defect: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.recorder = RequestRecorder(max_body_bytes, metrics, on_defect)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        # The admission gate, in front of the data plane, may have started the request.
        started = state.get("started") or time.perf_counter()
        request_id = state.get("request_id") or self._request_id(scope)
        state["request_id"] = request_id
        status = {"code": 500, "started": False}
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        recorder = self.recorder
        try:
            declared = self._content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._too_large(send_with_id, request_id)
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        except BodyTooLarge:
            await self._too_large(send_with_id, request_id)
        except Exception:
            recorder.defect(scope, request_id)
            if status["started"]:
                raise  # too late for an error body; the server closes the connection
            await send_error(send_with_id, 500, "internal", "Internal error.", request_id)
        finally:
            recorder.finish(scope, request_id, status["code"], started)

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                kept = well_formed_request_id(value)
                if kept is not None:
                    return kept
        return new_request_id()

    @staticmethod
    def _content_length(scope: Scope) -> int | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    def _capped(self, receive: Receive) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge()
            return message

        return capped

    async def _too_large(self, send: Send, request_id: str) -> None:
        message = self.recorder.too_large_message
        await send_error(send, 413, "payload_too_large", message, request_id)
