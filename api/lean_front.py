"""The lean query route served straight from the admission gate.

An admitted ``POST /v1/collections/{name}/query`` (the key has the read scope, the body
is JSON or the binary query format) is answered here, called by the gate
(api/admission.py) in place of the app: not through FastAPI's entry point, Starlette's
middleware stack (server errors, exception telemetry, body limit, the request context,
the lean admin path, the exception handlers) and its routing over every route. What
that chain does for such a request is done here, the same way and with the same pieces
(api/middleware.py's :class:`RequestRecorder`):

- the request id the gate settled (an incoming well-formed ``X-Request-Id`` kept, else a
  new one) ends the response's headers, as ``X-Request-Id``;
- the body is capped as it is read (413, the request context's error body);
- the answer, or the API's error body for an error the API answers (api/errors.py);
- an exception no error maps is a defect: logged with its traceback, counted in
  ``vectorpanda_internal_errors`` and answered the documented 500 with the request id
  (or re-raised if the answer had started, as the request context does);
- one request-log line and the request's metrics (``vectorpanda_http_requests`` and the
  latency histogram, labelled with the query route's template), usage included;
- a client that goes away stops the worker's work (api/lean_query.py).

Every other request, and every query the lean handler cannot prove valid (its body
replayed), goes on to the app (``chain``) unchanged, where the reference route answers.
The route stays registered there, so the OpenAPI document is the same.

A ``POST /v1/collections/{name}/upsert`` by a key with the write scope is served the
same way (api/lean_upsert.py) when its body is the binary upsert format (parsed here;
the route cannot read it), or JSON of at least the query desk's 64 KiB (parsed and
checked by the desk's helper process rather than on the event loop); a smaller JSON
one, or one the helper refuses, goes to its route.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from api.binary_query import BINARY_TYPE, BinaryQueryError
from api.errors import ApiError, error_body, error_parts
from api.lean_query import (
    JSON_TYPE,
    Disconnected,
    LeanQuery,
    read_body,
    replay_body,
    wants_binary,
)
from api.lean_upsert import UPSERT_SUFFIX, LeanUpsert
from api.middleware import BodyTooLarge, RequestRecorder, send_error
from api.query_desk import QueryDesk
from api.query_parse import Fallback
from coordinator.accounts.model import Principal
from eventlog.events import Scope as KeyScope

_JSON_CONTENT = (b"content-type", JSON_TYPE)
_BINARY_CONTENT = (b"content-type", BINARY_TYPE)


class LeanFront:
    """The gate's callable for admitted requests: lean queries here, the rest to ``chain``."""

    def __init__(
        self,
        chain: ASGIApp,
        *,
        query: LeanQuery,
        recorder: RequestRecorder,
        desk: QueryDesk | None = None,
        upsert: LeanUpsert | None = None,
    ) -> None:
        self.chain = chain
        self.query = query
        self.recorder = recorder
        # Large JSON bodies are parsed in a process of its own (api/query_desk.py).
        self.desk = desk
        # Binary upserts, and with the desk large JSON ones (api/lean_upsert.py).
        self.upsert = upsert

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = LeanQuery.collection(scope)
        if name is None:
            if self.upsert is not None and scope["path"].endswith(UPSERT_SUFFIX):
                handed_on = await self._lean_upsert(scope, receive, send)
                if handed_on is None:
                    return
                receive = handed_on
        else:
            principal: Principal | None = scope["state"].get("principal")
            if principal is not None and KeyScope.READ in principal.scopes:
                content_type, accept = _content_type_and(scope, b"accept")
                if content_type in (JSON_TYPE, BINARY_TYPE):
                    handed_on = await self._serve(
                        scope, receive, send, name, principal, content_type, accept
                    )
                    if handed_on is None:
                        return
                    receive = handed_on
        await self.chain(scope, receive, send)

    async def _lean_upsert(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """A binary upsert, or a large JSON one (its body parsed by the desk), by a key
        with the write scope, answered here (None); for any other request, ``receive``
        untouched."""
        name = LeanUpsert.collection(scope)
        principal: Principal | None = scope["state"].get("principal")
        if name is None or principal is None or KeyScope.WRITE not in principal.scopes:
            return receive
        content_type, length = _content_type_and(scope, b"content-length")
        assert self.upsert is not None
        if content_type == BINARY_TYPE:
            return await self._serve(
                scope, receive, send, name, principal, content_type, None, self.upsert
            )
        if content_type != JSON_TYPE or self.desk is None:
            return receive
        if length is not None and length.isdigit() and int(length) < self.desk.big_body_bytes:
            return receive  # small: the route's parse costs less than the trip to the desk
        return await self._serve(
            scope, receive, send, name, principal, content_type, None, self.upsert
        )

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        principal: Principal,
        content_type: bytes,
        accept: bytes | None,
        upsert: LeanUpsert | None = None,
    ) -> Receive | None:
        """Answer the query (or with ``upsert``, the large JSON upsert), logged and
        counted; or the ``receive`` the chain must get when the reference route answers
        instead (nothing logged or counted here)."""
        state = scope["state"]
        request_id: str = state["request_id"]
        id_header = (b"x-request-id", request_id.encode())
        recorder = self.recorder
        status = 500  # as the request context: what is logged if no answer starts
        responded = False
        recorded = True
        try:
            try:
                body = await read_body(receive, recorder.max_body_bytes)
            except Disconnected:
                recorded = False
                return receive  # the route finds the same
            failure: Exception | None = None
            rows = query = None
            try:
                if upsert is not None and content_type == BINARY_TYPE:
                    rows = upsert.parse_binary(body)
                elif upsert is not None:
                    assert self.desk is not None
                    rows = await self.desk.parse_upsert(body)
                elif content_type == JSON_TYPE and self.desk is not None:
                    query = await self.desk.parse(body)
                else:
                    query = self.query.parse(content_type, body)
            except Fallback:
                recorded = False
                return replay_body(body, receive)
            except BinaryQueryError as exc:
                failure = exc.as_api_error()
            except ApiError as exc:  # a binary upsert the API refuses
                failure = exc
            # for the request log and the metrics
            scope["route"] = self.query.route if upsert is None else upsert.route
            scope["path_params"] = {"name": name}
            binary = upsert is None and wants_binary(accept)
            try:
                if failure is not None:
                    raise failure
                if rows is not None:
                    assert upsert is not None
                    answer = await upsert.answer(principal, name, rows)
                else:
                    assert query is not None
                    answer = await self.query.answer(principal, name, query, receive, binary)
            except Exception as exc:
                parts = error_parts(exc)
                if parts is None:
                    raise  # a defect: answered 500 below
                status, code, message, retry_after = parts
                answer = error_body(status, code, message, request_id)
                headers = [(b"content-length", str(len(answer)).encode()), _JSON_CONTENT]
                if retry_after is not None:
                    headers.append((b"retry-after", str(retry_after).encode()))
            else:
                status = 200
                kind = _BINARY_CONTENT if binary else _JSON_CONTENT
                headers = [(b"content-length", str(len(answer)).encode()), kind]
            headers.append(id_header)
            responded = True
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
        except BodyTooLarge:
            responded = True
            status = 413
            message = recorder.too_large_message
            await send_error(send, 413, "payload_too_large", message, request_id, id_header)
        except Exception:
            recorder.defect(scope, request_id)
            if responded:
                raise  # too late for an error body; the server closes the connection
            responded = True
            status = 500
            await send_error(send, 500, "internal", "Internal error.", request_id, id_header)
        finally:
            if recorded:
                recorder.finish(scope, request_id, status, state["started"])
        return None


def _content_type_and(scope: Scope, other: bytes) -> tuple[bytes | None, bytes | None]:
    """The request's first Content-Type header and first ``other`` header (as
    Headers.get finds them), in one pass over the raw headers."""
    content_type = found = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            if content_type is None:
                content_type = value
        elif key == other and found is None:
            found = value
    return content_type, found
