"""The one error type the tenant store raises; the service turns it into a reply."""

from __future__ import annotations

from workers.protocol import ErrorCode


class StoreError(Exception):
    """A refusal with a wire error code and a message safe to show the client."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def collection_not_found(name: str) -> StoreError:
    """The error for a collection that does not exist (or belongs to someone else)."""
    return StoreError(ErrorCode.NOT_FOUND, f"collection '{name}' not found")
