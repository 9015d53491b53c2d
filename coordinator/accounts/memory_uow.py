"""The in-memory unit of work: same contract as SQLite, for fast unit tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace

from coordinator.accounts.data_key_rows import DataKeyRecord, MemoryDataKeyRows
from coordinator.accounts.model import (
    ApiKeyRecord,
    ClientRecord,
    OperatorRecord,
    Principal,
    principal_for,
)
from coordinator.accounts.uow import (
    AccountsTransaction,
    CommitListeners,
    T,
    TransactionBase,
)
from eventlog.memory_store import InMemoryEventStore
from eventlog.records import StoredEvent


class InMemoryTransaction(TransactionBase):
    """A transaction over plain dicts."""

    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        super().__init__()
        self._uow = uow
        self.events = uow.event_store
        self.data_keys = MemoryDataKeyRows(uow.data_keys)

    def get_client(self, client_id: str) -> ClientRecord | None:
        return self._uow.clients.get(client_id)

    def list_clients(self) -> list[ClientRecord]:
        return sorted(self._uow.clients.values(), key=lambda c: (c.created_at, c.client_id))

    def add_client(self, client: ClientRecord) -> None:
        self._uow.clients[client.client_id] = client

    def update_client(self, client: ClientRecord) -> None:
        self._uow.clients[client.client_id] = client

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        return self._uow.api_keys.get(key_id)

    def list_api_keys(self, client_id: str) -> list[ApiKeyRecord]:
        keys = [k for k in self._uow.api_keys.values() if k.client_id == client_id]
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    def add_api_key(self, key: ApiKeyRecord) -> None:
        self._uow.api_keys[key.key_id] = key

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        key = self._uow.api_keys[key_id]
        self._uow.api_keys[key_id] = replace(key, revoked_at=revoked_at)

    def touch_api_keys(self, used: Mapping[str, str]) -> None:
        for key_id, at in used.items():
            key = self._uow.api_keys.get(key_id)
            if key is not None:
                self._uow.api_keys[key_id] = replace(key, last_used_at=at)

    def find_principal(self, key_id: str) -> Principal | None:
        key = self._uow.api_keys.get(key_id)
        client = self._uow.clients.get(key.client_id) if key else None
        return principal_for(key, client) if key and client else None

    def get_operator(self, operator_id: str) -> OperatorRecord | None:
        return self._uow.operators.get(operator_id)

    def list_operators(self) -> list[OperatorRecord]:
        return sorted(self._uow.operators.values(), key=lambda o: (o.created_at, o.name))

    def add_operator(self, operator: OperatorRecord) -> None:
        self._uow.operators[operator.operator_id] = operator

    def revoke_operator(self, operator_id: str, revoked_at: str) -> None:
        operator = self._uow.operators[operator_id]
        self._uow.operators[operator_id] = replace(operator, revoked_at=revoked_at)


class InMemoryUnitOfWork(CommitListeners):
    """Dicts and an in-memory event log; a failed body is rolled back from a snapshot."""

    def __init__(self) -> None:
        super().__init__()
        self.clients: dict[str, ClientRecord] = {}
        self.api_keys: dict[str, ApiKeyRecord] = {}
        self.operators: dict[str, OperatorRecord] = {}
        self.data_keys: dict[tuple[str, int], DataKeyRecord] = {}
        self.event_store = InMemoryEventStore()
        self.reads = 0
        self._lock = threading.Lock()

    def _write_sync(self, body: Callable[[AccountsTransaction], T]) -> tuple[T, list[StoredEvent]]:
        with self._lock:
            clients, keys, operators = dict(self.clients), dict(self.api_keys), dict(self.operators)
            data_keys = dict(self.data_keys)
            mark = self.event_store.snapshot()
            tx = InMemoryTransaction(self)
            try:
                return body(tx), tx.appended
            except BaseException:
                self.clients, self.api_keys, self.operators = clients, keys, operators
                self.data_keys.clear()
                self.data_keys.update(data_keys)
                self.event_store.restore(mark)
                raise

    def _read_sync(self, body: Callable[[AccountsTransaction], T]) -> T:
        with self._lock:
            self.reads += 1
            return body(InMemoryTransaction(self))

    async def write(self, body: Callable[[AccountsTransaction], T]) -> T:
        result, appended = await asyncio.to_thread(self._write_sync, body)
        self._notify(appended)
        return result

    async def read(self, body: Callable[[AccountsTransaction], T]) -> T:
        return await asyncio.to_thread(self._read_sync, body)

    async def writable(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""
