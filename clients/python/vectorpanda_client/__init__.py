"""The VectorPanda Python SDK: ``Client`` and ``AsyncClient`` over the HTTP API."""

from vectorpanda_client.async_client import AsyncClient, AsyncCollection
from vectorpanda_client.errors import (
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
from vectorpanda_client.models import (
    CollectionInfo,
    FetchedVector,
    Indexing,
    Match,
    QueryResult,
    Usage,
)
from vectorpanda_client.records import ListedVector, VectorPage
from vectorpanda_client.retry import NO_RETRIES, RetryPolicy
from vectorpanda_client.sync_client import Client, Collection

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
    "Indexing",
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
