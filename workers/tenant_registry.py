"""The tenants this worker has open, keyed by tenant id."""

from __future__ import annotations

import threading
from pathlib import Path

from workers.collection_spec import check_tenant_id
from workers.tenant_store import TenantStore


class TenantRegistry:
    """Opens a tenant's store on first use and closes it on release."""

    def __init__(self, hot_dir: Path, compact_bytes: int) -> None:
        self.hot_dir = hot_dir
        self._compact_bytes = compact_bytes
        self._lock = threading.Lock()
        self._stores: dict[str, TenantStore] = {}

    def open(self, tenant: str) -> TenantStore:
        """The tenant's store, opening it (taking its directory lock) if needed."""
        check_tenant_id(tenant)
        with self._lock:
            store = self._stores.get(tenant)
            if store is None:
                store = TenantStore.open(self.hot_dir, tenant, self._compact_bytes)
                self._stores[tenant] = store
            return store

    def release(self, tenant: str) -> None:
        """Close the tenant's store and unlock its directory (no-op if not open)."""
        with self._lock:
            store = self._stores.pop(tenant, None)
        if store is not None:
            store.close()

    def delete_tenant(self, tenant: str) -> None:
        """Remove every file of the tenant; a later open starts from nothing."""
        store = self.open(tenant)
        with self._lock:
            self._stores.pop(tenant, None)
        store.delete_everything()

    def release_all(self) -> None:
        """Close every open tenant."""
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
        for store in stores:
            store.close()

    def open_tenants(self) -> list[str]:
        """Tenant ids currently open."""
        with self._lock:
            return sorted(self._stores)

    @property
    def memory_bytes(self) -> int:
        """Approximate memory held by all open tenants."""
        with self._lock:
            stores = list(self._stores.values())
        return sum(store.memory_bytes for store in stores)
