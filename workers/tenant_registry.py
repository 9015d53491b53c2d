"""The tenants this worker has open, keyed by tenant id."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from workers.collection import DEFAULT_FRESH_LIMIT, StoreOptions
from workers.collection_spec import check_tenant_id
from workers.maintenance import Maintenance
from workers.sealed import Keyring
from workers.tenant_store import TenantStore


class TenantRegistry:
    """Opens a tenant's store on first use and closes it on release."""

    def __init__(
        self,
        hot_dir: Path,
        compact_bytes: int,
        *,
        fresh_limit: int | None = DEFAULT_FRESH_LIMIT,
        maintenance: Maintenance | None = None,
    ) -> None:
        self.hot_dir = hot_dir
        self.options = StoreOptions(compact_bytes, fresh_limit, maintenance or Maintenance.shared())
        self._lock = threading.Lock()
        self._stores: dict[str, TenantStore] = {}
        # Plaintext data keys of owned tenants (from ASSIGN); dropped on release or delete.
        self._keys: dict[str, Keyring] = {}

    def set_keys(self, tenant: str, keyring: Keyring | None) -> bool:
        """Hold the tenant's data keys (None: it writes plaintext); True if they changed.

        An open store whose keys changed drops its loaded collections, so each is read
        again (and re-encrypted under the new current key) on its next use.
        """
        check_tenant_id(tenant)
        with self._lock:
            if self._keys.get(tenant) == keyring:
                return False
            if keyring is None:
                self._keys.pop(tenant, None)
            else:
                self._keys[tenant] = keyring
            store = self._stores.get(tenant)
        if store is not None:
            store.set_keyring(keyring)
        return True

    def _options_for(self, tenant: str) -> StoreOptions:
        keyring = self._keys.get(tenant)
        if keyring is None:
            return self.options
        return dataclasses.replace(self.options, keyring=keyring)

    def open(self, tenant: str) -> TenantStore:
        """The tenant's store, opening it (taking its directory lock) if needed."""
        check_tenant_id(tenant)
        with self._lock:
            store = self._stores.get(tenant)
            if store is None:
                store = TenantStore(self.hot_dir, tenant, self._options_for(tenant))
                store.take_ownership()
                self._stores[tenant] = store
            return store

    def release(self, tenant: str) -> None:
        """Close the tenant's store and unlock its directory (no-op if not open)."""
        with self._lock:
            store = self._stores.pop(tenant, None)
            self._keys.pop(tenant, None)
        if store is not None:
            store.close()

    def unload(self, tenant: str) -> int:
        """Drop the tenant's collections from memory but keep owning it; return bytes freed."""
        with self._lock:
            store = self._stores.get(tenant)
        return store.unload() if store is not None else 0

    def delete_tenant(self, tenant: str) -> None:
        """Remove every file of the tenant; a later open starts from nothing."""
        store = self.open(tenant)
        with self._lock:
            self._stores.pop(tenant, None)
            self._keys.pop(tenant, None)
        store.delete_everything()

    def release_all(self) -> None:
        """Close every open tenant."""
        with self._lock:
            stores = list(self._stores.values())
            self._stores.clear()
            self._keys.clear()
        for store in stores:
            store.close()

    def loaded(self, tenant: str) -> TenantStore | None:
        """The tenant's store if it is open, else None; never waits or opens anything."""
        return self._stores.get(tenant)  # a dict read is atomic: no lock needed

    def open_tenants(self) -> list[str]:
        """Tenant ids currently open."""
        with self._lock:
            return sorted(self._stores)

    def tenant_memory(self, tenant: str) -> int:
        """Approximate memory held by one tenant's loaded collections."""
        with self._lock:
            store = self._stores.get(tenant)
        return store.memory_bytes if store is not None else 0

    @property
    def memory_bytes(self) -> int:
        """Approximate memory held by all open tenants."""
        with self._lock:
            stores = list(self._stores.values())
        return sum(store.memory_bytes for store in stores)
