"""VectorPanda: a hosted multi-tenant vector database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vectorpanda_client import AsyncClient, Client, VectorPandaError

__all__ = ["AsyncClient", "Client", "VectorPandaError", "__version__"]


def __getattr__(name: str) -> Any:
    # The client (clients/python, `vectorpanda_client`) is imported on first use, so the
    # server processes do not pay for it.
    if name in ("Client", "AsyncClient", "VectorPandaError"):
        import vectorpanda_client

        return getattr(vectorpanda_client, name)
    raise AttributeError(f"module 'vectorpanda' has no attribute {name!r}")
