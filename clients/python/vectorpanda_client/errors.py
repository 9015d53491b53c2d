"""Typed errors of the SDK: one class per API error code, one common base."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson


class VectorPandaError(Exception):
    """Base of every error the SDK raises; carries the API's error code."""

    code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" (HTTP {self.status}, request {self.request_id})" if self.status else ""
        return f"{self.code}: {self.message}{where}"


class BadRequestError(VectorPandaError):
    code = "bad_request"


class UnauthorizedError(VectorPandaError):
    code = "unauthorized"


class ForbiddenError(VectorPandaError):
    code = "forbidden"


class NotFoundError(VectorPandaError):
    code = "not_found"


class ConflictError(VectorPandaError):
    code = "conflict"


class PayloadTooLargeError(VectorPandaError):
    code = "payload_too_large"


class InvalidError(VectorPandaError, ValueError):
    """The server (or the SDK, before sending) found the input invalid."""

    code = "invalid"


class PausedError(VectorPandaError):
    code = "paused"


class RateLimitedError(VectorPandaError):
    code = "rate_limited"


class QuotaExceededError(VectorPandaError):
    code = "quota_exceeded"


class UnavailableError(VectorPandaError):
    code = "unavailable"


class InsufficientStorageError(VectorPandaError):
    """507: the service is short of disk space; writes are refused, reads still work.

    Not retried automatically: space comes back when data is deleted or the
    operators grow the volume, not within a retry's backoff.
    """

    code = "insufficient_storage"


class ServerError(VectorPandaError):
    """An error code this SDK does not know, or a 5xx without a documented body."""

    code = "internal"

    def __init__(self, message: str, *, code: str = "internal", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code  # type: ignore[misc]


class ConnectionFailed(VectorPandaError):
    """No HTTP answer: the server could not be reached, or the exchange broke off.

    ``sent`` is False when the request certainly never reached the server.
    """

    code = "connection_failed"

    def __init__(self, message: str, *, sent: bool, refused: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.sent = sent
        # Nothing listens at the address: retrying for long only hides a wrong URL.
        self.refused = refused


ERRORS_BY_CODE: dict[str, type[VectorPandaError]] = {
    cls.code: cls
    for cls in (
        BadRequestError,
        UnauthorizedError,
        ForbiddenError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        InvalidError,
        PausedError,
        RateLimitedError,
        QuotaExceededError,
        UnavailableError,
        InsufficientStorageError,
    )
}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name, from httpx headers or a plain dict."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def parse_retry_after(headers: Mapping[str, str]) -> int | None:
    """Whole seconds from a ``Retry-After`` header (HTTP dates are not used by the API)."""
    raw = header(headers, "retry-after")
    if raw is None:
        return None
    try:
        return max(0, int(float(raw.strip())))
    except ValueError:
        return None


def error_from_response(
    status: int, headers: Mapping[str, str], content: bytes
) -> VectorPandaError:
    """The typed error for a non-2xx answer, from the documented error body."""
    code, message, request_id = "", f"HTTP {status}", header(headers, "x-request-id")
    try:
        body = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", ""))
        message = str(err.get("message", message))
        request_id = err.get("request_id") or request_id
    kwargs: dict[str, Any] = {
        "status": status,
        "request_id": request_id,
        "retry_after": parse_retry_after(headers),
    }
    cls = ERRORS_BY_CODE.get(code)
    if cls is not None:
        return cls(message, **kwargs)
    return ServerError(message, code=code or f"http_{status}", **kwargs)
