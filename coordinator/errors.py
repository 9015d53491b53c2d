"""Errors the coordinator raises towards its entrypoints (no web framework here)."""

from __future__ import annotations


class TenantUnavailable(Exception):
    """No live worker can serve the tenant right now."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class WorkerRefused(Exception):
    """The owning worker answered with an error code (see workers.protocol.ErrorCode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class OutcomeUnknown(Exception):
    """A write reached a worker that vanished or fell silent before answering.

    It may or may not have been applied; repeating the same request is safe
    (upserts and deletes by id are idempotent).
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
