"""The VectorPanda Python SDK: ``Client`` and ``AsyncClient`` over the HTTP API."""

from vectorpanda.sdk.async_client import AsyncClient, AsyncCollection
from vectorpanda.sdk.errors import (
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    ForbiddenError,
    InsufficientStorageError,
    InvalidError,
    NotFoundError,
    PausedError,
    PayloadTooLargeError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
    UnavailableError,
    VectorPandaError,
)
from vectorpanda.sdk.models import CollectionInfo, FetchedVector, Match, QueryResult, Usage
from vectorpanda.sdk.records import ListedVector, VectorPage
from vectorpanda.sdk.retry import NO_RETRIES, RetryPolicy
from vectorpanda.sdk.sync_client import Client, Collection

__all__ = [
    "NO_RETRIES",
    "AsyncClient",
    "AsyncCollection",
    "BadRequestError",
    "Client",
    "Collection",
    "CollectionInfo",
    "ConflictError",
    "ConnectionFailed",
    "FetchedVector",
    "ForbiddenError",
    "InsufficientStorageError",
    "InvalidError",
    "ListedVector",
    "Match",
    "NotFoundError",
    "PausedError",
    "PayloadTooLargeError",
    "QueryResult",
    "QuotaExceededError",
    "RateLimitedError",
    "RetryPolicy",
    "ServerError",
    "UnauthorizedError",
    "UnavailableError",
    "Usage",
    "VectorPage",
    "VectorPandaError",
]
