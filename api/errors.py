"""One error hierarchy, mapped to the body of shared/API.md.

``{"error": {"code", "message", "request_id"}}`` with the documented status.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.routing import json_response
from coordinator.accounts.model import StoreUnavailable
from coordinator.errors import OutcomeUnknown, TenantUnavailable, WorkerRefused

# Worker error codes (workers.protocol.ErrorCode) as HTTP status and API code.
WORKER_CODES = {
    "not_found": (404, "not_found"),
    "conflict": (409, "conflict"),
    "invalid": (422, "invalid"),
    # Worker back-pressure: the server is overloaded, not the client too fast.
    "busy": (503, "busy"),
    "quota_exceeded": (429, "quota_exceeded"),
    "unavailable": (503, "unavailable"),
    "not_owner": (503, "unavailable"),
    "insufficient_storage": (507, "insufficient_storage"),
}


class ApiError(Exception):
    """Base of every error the API answers with."""

    status = 500
    code = "internal"
    default_message = "Internal error."

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.retry_after = retry_after


class BadRequest(ApiError):
    status, code, default_message = 400, "bad_request", "The request body is malformed."


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"
    default_message = "Missing, malformed, unknown or revoked credential."


class Forbidden(ApiError):
    status, code, default_message = 403, "forbidden", "The key lacks the scope for this action."


class NotFound(ApiError):
    status, code, default_message = 404, "not_found", "Not found."


class Conflict(ApiError):
    status, code, default_message = 409, "conflict", "Conflict."


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "payload_too_large", "The request is too large."


class Invalid(ApiError):
    status, code, default_message = 422, "invalid", "The request is invalid."


class Paused(ApiError):
    status, code = 423, "paused"
    default_message = (
        "This account is paused. Ask the operators to resume it "
        "(admin: POST /admin/v1/clients/{id}/resume)."
    )


class RateLimited(ApiError):
    status, code, default_message = 429, "rate_limited", "Too many requests; slow down."


class QuotaExceeded(ApiError):
    status, code, default_message = 429, "quota_exceeded", "The tier's quota is exhausted."


class Unavailable(ApiError):
    status, code = 503, "unavailable"
    default_message = "No worker can serve this tenant right now; retry shortly."


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid"])
    message: str = Field(examples=["top_k: Input should be a valid integer"])
    request_id: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


_ERROR_STATUSES = {
    400: "Malformed JSON or base64 (bad_request)",
    401: "Missing, malformed, unknown or revoked credential (unauthorized)",
    403: "The key lacks the scope (forbidden)",
    404: "No such resource, or a path that is not a route (not_found)",
    405: "The path does not take this method (method_not_allowed)",
    409: "Conflict (conflict)",
    413: "Body or per-request counts over the limits (payload_too_large)",
    422: "Schema violation, non-standard JSON, bad filter, unknown query parameter (invalid)",
    423: "The client is paused (paused)",
    429: "Over the rate (rate_limited) or a quota (quota_exceeded); Retry-After set",
    500: "A defect (internal); the request id is in the body",
    503: "No worker can serve the tenant right now (unavailable); Retry-After set",
}

# Documented on every API route, so the OpenAPI document lists every status it can answer.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in _ERROR_STATUSES.items()
}


class AnswerInstead(Exception):
    """Raised by a dependency that answers the request itself (the dashboard's sign-in
    guard: a redirect to the login page); the handler sends ``response`` as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__("answered by a dependency")
        self.response = response


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_response(
    request: Request, status: int, code: str, message: str, retry_after: int | None = None
) -> Response:
    body = {"error": {"code": code, "message": message, "request_id": request_id_of(request)}}
    response = json_response(body, status_code=status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def describe_validation(exc: RequestValidationError) -> tuple[int, str, str]:
    errors: list[Any] = list(exc.errors())
    for err in errors:
        if err.get("type") == "json_invalid":
            return 400, "bad_request", "The request body is not valid JSON."
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return 422, "invalid", "; ".join(parts) or "The request is invalid."


def _worker_refusal(exc: WorkerRefused) -> tuple[int, str, str, int | None]:
    status, code = WORKER_CODES.get(exc.code, (500, "internal"))
    # Workers word client-facing errors for clients (never paths or other
    # tenants); only internal failures are hidden behind a generic message.
    worded = status < 500 or code in ("unavailable", "busy", "insufficient_storage")
    message = exc.message if worded else "Internal error."
    return status, code, message, (1 if status in (429, 503) else None)


def error_parts(exc: Exception) -> tuple[int, str, str, int | None] | None:
    """Status, code, message and Retry-After of an error the API answers; None for a defect.

    The exception handlers below and the lean query path (api/lean_query.py) both use it.
    """
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message, exc.retry_after
    if isinstance(exc, StoreUnavailable):
        return 503, "unavailable", str(exc), 5
    if isinstance(exc, OutcomeUnknown):
        return 503, "outcome_unknown", exc.message, exc.retry_after
    if isinstance(exc, TenantUnavailable):
        return 503, "unavailable", exc.message, exc.retry_after
    if isinstance(exc, WorkerRefused):
        return _worker_refusal(exc)
    return None


def error_body(status: int, code: str, message: str, request_id: str) -> bytes:
    """The documented error body, as error_response renders it."""
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return bytes(json_response(body, status_code=status).body)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error, including framework ones, to the documented body."""

    async def on_error(request: Request, exc: Exception) -> Response:
        parts = error_parts(exc)
        assert parts is not None
        status, code, message, retry_after = parts
        return error_response(request, status, code, message, retry_after)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        status, code, message = describe_validation(exc)
        return error_response(request, status, code, message)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {
            400: "bad_request",
            401: "unauthorized",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
            422: "invalid",
        }
        code = codes.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route (paths are matched exactly, without a trailing slash)."
        return error_response(request, exc.status_code, code, message)

    async def on_answer(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AnswerInstead)
        return exc.response

    app.add_exception_handler(AnswerInstead, on_answer)
    for kind in (ApiError, StoreUnavailable, OutcomeUnknown, TenantUnavailable, WorkerRefused):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
