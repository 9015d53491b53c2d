"""VectorPanda: a hosted multi-tenant vector database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from vectorpanda.sdk import AsyncClient, Client, VectorPandaError

__all__ = ["AsyncClient", "Client", "VectorPandaError", "__version__"]


def __getattr__(name: str) -> Any:
    # The SDK is imported on first use, so the server processes do not pay for it.
    if name in ("Client", "AsyncClient", "VectorPandaError"):
        from vectorpanda import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'vectorpanda' has no attribute {name!r}")
