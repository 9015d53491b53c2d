"""Census figures: with no worker live, a hot tenant's row fails at once.

Asking the router would wait for a worker (``WAIT_FOR_WORKER_S``) per call
and per client, which stalled a census of a thousand clients for minutes
while the fleet was down.
"""

from __future__ import annotations

import pytest

from coordinator.dataplane import DataPlane, Limits
from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerHub
from coordinator.pause import WorkerTenantFiles
from coordinator.router import TenantRouter
from coordinator.tenant_figures import census_figures


async def test_a_hot_tenant_with_no_live_worker_fails_without_waiting() -> None:
    router = TenantRouter(WorkerHub("secret"), timeout_s=30.0)
    files = WorkerTenantFiles(router)
    figures = census_figures(DataPlane(router, Limits()), files)
    with pytest.raises(TenantUnavailable, match="no worker is live"):
        await figures("c_1", "active")
    assert router.assignments == {}
