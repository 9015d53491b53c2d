"""Unit of work: the write model and the event log change together or not at all.

A handler passes a synchronous body; the unit of work runs it in a thread
(``asyncio.to_thread``) inside one transaction, so nothing blocks the event
loop. After commit, listeners (the key cache) see the appended events on the
event loop before the handler returns. ``SqliteUnitOfWork`` keeps the
``clients`` and ``api_keys`` tables in the control database next to the event
log; ``memory_uow.InMemoryUnitOfWork`` is its stand-in for unit tests.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import orjson
from sqlalchemy import Connection, Engine, Row, insert, select, update
from sqlalchemy.exc import OperationalError

from coordinator.accounts import key_lookup
from coordinator.accounts.data_key_rows import DataKeyRows, SqliteDataKeyRows
from coordinator.accounts.group_commit import GroupCommitter, Outcome, WriteBody
from coordinator.accounts.model import (
    ApiKeyRecord,
    ClientRecord,
    ClientStatus,
    OperatorRecord,
    Principal,
    StoreUnavailable,
    Tier,
)
from coordinator.accounts.tables import api_keys_table, clients_table, operators_table
from eventlog.database import (
    DriverCursor,
    process_write_lock,
    read_transaction,
    write_transaction,
)
from eventlog.events import Event
from eventlog.records import ChainHead, EventStore, StoredEvent, utc_now
from eventlog.schema import ensure_schema
from eventlog.store import SqliteEventSession

T = TypeVar("T")
CommitListener = Callable[[Sequence[StoredEvent]], None]
log = logging.getLogger(__name__)


class AccountsTransaction(Protocol):
    """What a handler body may read and change inside one transaction."""

    now: str
    appended: list[StoredEvent]

    @property
    def events(self) -> EventStore: ...

    def get_client(self, client_id: str) -> ClientRecord | None: ...

    def list_clients(self) -> list[ClientRecord]: ...

    def add_client(self, client: ClientRecord) -> None: ...

    def update_client(self, client: ClientRecord) -> None: ...

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...

    def list_api_keys(self, client_id: str) -> list[ApiKeyRecord]: ...

    def add_api_key(self, key: ApiKeyRecord) -> None: ...

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None: ...

    def touch_api_keys(self, used: Mapping[str, str]) -> None:
        """Set ``last_used_at`` of each key (no event: a use is not an admin action)."""
        ...

    def find_principal(self, key_id: str) -> Principal | None: ...

    def get_operator(self, operator_id: str) -> OperatorRecord | None: ...

    def list_operators(self) -> list[OperatorRecord]: ...

    def add_operator(self, operator: OperatorRecord) -> None: ...

    def revoke_operator(self, operator_id: str, revoked_at: str) -> None: ...

    def append(self, events: Sequence[Event], actor: str) -> list[StoredEvent]: ...

    @property
    def data_keys(self) -> DataKeyRows: ...


class AccountsUnitOfWork(Protocol):
    """Runs transaction bodies; write bodies are serialised."""

    async def write(self, body: Callable[[AccountsTransaction], T]) -> T: ...

    async def read(self, body: Callable[[AccountsTransaction], T]) -> T: ...

    def subscribe(self, listener: CommitListener) -> None: ...

    async def writable(self) -> bool: ...

    def close(self) -> None: ...


class CommitListeners:
    """Commit listeners shared by every unit of work."""

    def __init__(self) -> None:
        self._listeners: list[CommitListener] = []

    def subscribe(self, listener: CommitListener) -> None:
        """Call ``listener(events)`` on the event loop after each commit that appended."""
        self._listeners.append(listener)

    def _notify(self, appended: Sequence[StoredEvent]) -> None:
        if not appended:
            return
        for listener in self._listeners:
            try:
                listener(appended)
            except Exception:
                # The command is committed; a listener failure must not report it as failed.
                log.exception("commit listener failed")


class TransactionBase:
    """The parts of a transaction that do not depend on the storage."""

    events: EventStore

    def __init__(self) -> None:
        self.now = utc_now()
        self.appended: list[StoredEvent] = []

    def append(self, events: Sequence[Event], actor: str) -> list[StoredEvent]:
        """Append events stamped with this transaction's time."""
        stored = self.events.append(events, actor, self.now)
        self.appended.extend(stored)
        return stored


def _client(row: Row[Any]) -> ClientRecord:
    m = row._mapping
    return ClientRecord(
        client_id=m["client_id"],
        name=m["name"],
        email=m["email"],
        tier=Tier(m["tier"]),
        status=ClientStatus(m["status"]),
        created_at=m["created_at"],
    )


def _api_key(row: Row[Any]) -> ApiKeyRecord:
    return key_lookup.api_key_record(row._mapping)


# The hot statements of an admin action, on the driver (see eventlog.database.DriverCursor).
_GET_CLIENT = (
    "SELECT client_id, name, email, tier, status, created_at FROM clients WHERE client_id = ?"
)
_UPDATE_CLIENT = "UPDATE clients SET tier = ?, status = ? WHERE client_id = ?"


class SqliteTransaction(TransactionBase):
    """A transaction on the control database: write model and event log share ``conn``."""

    def __init__(
        self, conn: Connection, head: ChainHead | None = None, driver: DriverCursor | None = None
    ) -> None:
        super().__init__()
        self._conn = conn
        self._driver = driver if driver is not None else DriverCursor(conn)
        self.events = SqliteEventSession(conn, head, self._driver)
        self.data_keys = SqliteDataKeyRows(conn)

    def get_client(self, client_id: str) -> ClientRecord | None:
        row = self._driver.one(_GET_CLIENT, (client_id,))
        if row is None:
            return None
        cid, name, email, tier, status, created_at = row
        return ClientRecord(cid, name, email, Tier(tier), ClientStatus(status), created_at)

    def list_clients(self) -> list[ClientRecord]:
        order = (clients_table.c.created_at, clients_table.c.client_id)
        return [_client(r) for r in self._conn.execute(select(clients_table).order_by(*order))]

    def add_client(self, client: ClientRecord) -> None:
        values = {f: getattr(client, f) for f in ClientRecord.__dataclass_fields__}
        values["tier"], values["status"] = client.tier.value, client.status.value
        self._conn.execute(insert(clients_table).values(**values))

    def update_client(self, client: ClientRecord) -> None:
        values = (client.tier.value, client.status.value, client.client_id)
        self._driver.execute(_UPDATE_CLIENT, values)

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        query = select(api_keys_table).where(api_keys_table.c.key_id == key_id)
        row = self._conn.execute(query).first()
        return None if row is None else _api_key(row)

    def list_api_keys(self, client_id: str) -> list[ApiKeyRecord]:
        query = (
            select(api_keys_table)
            .where(api_keys_table.c.client_id == client_id)
            .order_by(api_keys_table.c.created_at, api_keys_table.c.key_id)
        )
        return [_api_key(r) for r in self._conn.execute(query)]

    def add_api_key(self, key: ApiKeyRecord) -> None:
        values = {f: getattr(key, f) for f in ApiKeyRecord.__dataclass_fields__}
        values["scopes"] = orjson.dumps([s.value for s in key.scopes]).decode("utf-8")
        cidrs = list(key.allowed_cidrs)
        values["allowed_cidrs"] = orjson.dumps(cidrs).decode("utf-8") if cidrs else None
        self._conn.execute(insert(api_keys_table).values(**values))

    def touch_api_keys(self, used: Mapping[str, str]) -> None:
        for key_id, at in used.items():
            query = update(api_keys_table).where(api_keys_table.c.key_id == key_id)
            self._conn.execute(query.values(last_used_at=at))

    def revoke_api_key(self, key_id: str, revoked_at: str) -> None:
        query = update(api_keys_table).where(api_keys_table.c.key_id == key_id)
        self._conn.execute(query.values(revoked_at=revoked_at))

    def find_principal(self, key_id: str) -> Principal | None:
        # One primary-key lookup joined to its client: the whole cost of a cache miss.
        return key_lookup.find_principal(self._conn, key_id)

    def get_operator(self, operator_id: str) -> OperatorRecord | None:
        query = select(operators_table).where(operators_table.c.operator_id == operator_id)
        row = self._conn.execute(query).first()
        return None if row is None else OperatorRecord(**row._mapping)

    def list_operators(self) -> list[OperatorRecord]:
        order = (operators_table.c.created_at, operators_table.c.name)
        rows = self._conn.execute(select(operators_table).order_by(*order))
        return [OperatorRecord(**r._mapping) for r in rows]

    def add_operator(self, operator: OperatorRecord) -> None:
        values = {f: getattr(operator, f) for f in OperatorRecord.__dataclass_fields__}
        self._conn.execute(insert(operators_table).values(**values))

    def revoke_operator(self, operator_id: str, revoked_at: str) -> None:
        query = update(operators_table).where(operators_table.c.operator_id == operator_id)
        self._conn.execute(query.values(revoked_at=revoked_at))


def _is_store_failure(exc: BaseException) -> bool:
    """The database refused the write (SQLAlchemy's error, or the driver's own)."""
    if isinstance(exc, (OperationalError, sqlite3.OperationalError)):
        return True
    # Driver statements on PostgreSQL raise psycopg's errors (only loaded with that driver).
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def _caller_error(exc: BaseException) -> BaseException:
    """What a writer sees: StoreUnavailable when the control database refused the write."""
    if not _is_store_failure(exc):
        return exc
    # The transaction (or the body's savepoint) rolled back: the action left no trace.
    reason = _store_failure(exc)
    log.error("control database write failed (%s): %s", reason, exc)
    failure = StoreUnavailable(reason)
    failure.__cause__ = exc
    return failure


def _store_failure(exc: BaseException) -> str:
    """A short, path-free reason for an SQLite write failure."""
    text = str(getattr(exc, "orig", exc)).lower()
    if "full" in text:
        return "its disk is full"
    if "readonly" in text or "read-only" in text:
        return "it is read-only"
    if "locked" in text or "busy" in text:
        return "it is busy"
    if "i/o" in text:
        return "a disk I/O error"
    return "a database error"


class SqliteUnitOfWork(CommitListeners):
    """Transactions on the control database: one writer at a time across processes.

    Despite the name, it runs on either dialect ``eventlog.database`` supports: the
    SQLite file (BEGIN IMMEDIATE) or PostgreSQL (an advisory transaction lock).
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        # In-process writers (the event store and the relay's deletes too) queue here
        # instead of sleeping in SQLite's busy handler.
        self._write_lock = process_write_lock(engine)
        self._group = GroupCommitter(self._write_batch_sync, self._notify, _caller_error)
        # Created, adopted or upgraded by the Alembic migrations when safe (eventlog/schema.py).
        ensure_schema(engine)

    def _write_batch_sync(self, bodies: Sequence[WriteBody]) -> list[Outcome]:
        """Run queued bodies in one transaction, each in its own savepoint; one COMMIT.

        A body that raises rolls back to its savepoint alone, so the others still
        commit; each sees the ones before it, exactly as if run one after another.
        """
        outcomes: list[Outcome] = []
        head: ChainHead | None = None  # known after the first body that appended
        with self._write_lock, write_transaction(self._engine) as conn:
            # Savepoints on the driver: SQLAlchemy's begin_nested() compiled two statements
            # per action and cost more CPU than the action's own statements.
            driver = DriverCursor(conn)
            for body in bodies:
                tx = SqliteTransaction(conn, head, driver)
                driver.savepoint()
                try:
                    result = body(tx)
                except Exception as exc:
                    driver.rollback_to_savepoint()  # its appends are gone: the head stays
                    outcomes.append((False, exc, []))
                else:
                    driver.release()
                    outcomes.append((True, result, tx.appended))
                    if tx.appended:
                        head = ChainHead(tx.appended[-1].seq, tx.appended[-1].hash)
        return outcomes

    def _read_sync(self, body: Callable[[AccountsTransaction], T]) -> T:
        with read_transaction(self._engine) as conn:
            return body(SqliteTransaction(conn))

    async def write(self, body: Callable[[AccountsTransaction], T]) -> T:
        """Run ``body`` in a write transaction; return once that transaction has committed.

        Writes that arrive while a commit is in flight share the next one (group
        commit: one fsync for the batch); each still returns only after its own commit.
        """
        result: T = await self._group.write(body)
        return result

    async def read(self, body: Callable[[AccountsTransaction], T]) -> T:
        return await asyncio.to_thread(self._read_sync, body)

    def _probe_write(self) -> bool:
        # Busy for a second means not ready; the probe must not queue behind a long write.
        if not self._write_lock.acquire(timeout=1.0):
            return False
        try:
            with write_transaction(self._engine) as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            log.warning("control database is not writable", exc_info=True)
            return False
        finally:
            self._write_lock.release()

    async def writable(self) -> bool:
        """Whether a write transaction can begin now (BEGIN IMMEDIATE, nothing written)."""
        return await asyncio.to_thread(self._probe_write)

    def close(self) -> None:
        """Close pooled connections (checkpointing the WAL on the last one)."""
        self._group.close()  # what is queued commits first
        self._engine.dispose()
