"""What a tenant holds: the figures the usage meter and the census record.

Read through the data plane (the owning worker) when the tenant is hot, from
the cold marker when it is paused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.dataplane import DataPlane
from coordinator.errors import TenantUnavailable
from coordinator.pause import WorkerTenantFiles
from eventlog.events import ClientStatus


def stored_figures(dataplane: DataPlane) -> Callable[[str], Awaitable[dict[str, int] | None]]:
    """Vectors and bytes of a tenant some worker has loaded; None (keep last) otherwise."""

    async def figures(client_id: str) -> dict[str, int] | None:
        if client_id not in dataplane.router.assignments:
            return None
        return await dataplane.usage(client_id)

    return figures


def census_figures(
    dataplane: DataPlane, files: WorkerTenantFiles
) -> Callable[[str, str], Awaitable[dict[str, Any]]]:
    """A census row's data figures: from the cold marker when paused, else from the owner."""

    async def figures(client_id: str, status: str) -> dict[str, Any]:
        if status == ClientStatus.PAUSED:
            summary = await files.describe(client_id)
            names = [c.get("name") for c in summary.get("collections", [])]
            return {**summary, "collections": names}
        if not dataplane.router.any_worker_live():
            # Waiting for a worker per client would stall the census for
            # minutes during a fleet outage; the row records the error.
            raise TenantUnavailable("no worker is live to report this tenant's data")
        infos = await dataplane.list_collections(client_id)
        usage = await dataplane.usage(client_id)
        return {
            "location": "hot",
            "collections": [c["name"] for c in infos],
            "vectors": usage["vectors"],
            "bytes": usage["bytes"],
        }

    return figures
