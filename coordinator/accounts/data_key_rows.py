"""Clients' wrapped data keys: rows of ``client_data_keys`` (SQLite, PostgreSQL) or in memory.

A client has one active data key; a rotation adds a "rotating" one (new files are
sealed with it) that becomes active when every file is re-encrypted, and the older
one is then "retired": kept, wrapped, so backups taken before stay restorable.
Deleting a client deletes all its rows (crypto-shredding): on SQLite the connection
turns on ``secure_delete`` first, so the freed pages are overwritten with zeros rather
than left in the file (on PostgreSQL the dead row version stays until vacuum: run
VACUUM after deletions where that matters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy import Connection, delete, insert, select, update

from coordinator.accounts.tables import data_keys_table


@dataclass(frozen=True, slots=True)
class DataKeyRecord:
    """One wrapped data key of a client."""

    client_id: str
    key_version: int
    key_id: str
    wrapped: str  # hex
    wrapper_key_id: str
    created_at: str
    state: str = "active"  # "active", "rotating" or "retired"


class DataKeyRows(Protocol):
    """What a transaction may do with wrapped data keys."""

    def of_client(self, client_id: str) -> list[DataKeyRecord]: ...

    def all(self) -> list[DataKeyRecord]: ...

    def add(self, record: DataKeyRecord) -> None: ...

    def rewrap(self, client_id: str, version: int, wrapped: str, wrapper_key_id: str) -> None: ...

    def destroy(self, client_id: str, versions: Sequence[int] | None = None) -> int: ...

    def set_state(self, client_id: str, version: int, state: str) -> None: ...


class SqliteDataKeyRows:
    """The rows in the control database, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def of_client(self, client_id: str) -> list[DataKeyRecord]:
        query = (
            select(data_keys_table)
            .where(data_keys_table.c.client_id == client_id)
            .order_by(data_keys_table.c.key_version)
        )
        return [DataKeyRecord(**r._mapping) for r in self._conn.execute(query)]

    def all(self) -> list[DataKeyRecord]:
        order = (data_keys_table.c.client_id, data_keys_table.c.key_version)
        rows = self._conn.execute(select(data_keys_table).order_by(*order))
        return [DataKeyRecord(**r._mapping) for r in rows]

    def add(self, record: DataKeyRecord) -> None:
        values = {f: getattr(record, f) for f in DataKeyRecord.__dataclass_fields__}
        self._conn.execute(insert(data_keys_table).values(**values))

    def _secure_delete(self) -> None:
        # SQLite overwrites freed pages with zeros; PostgreSQL's vacuum reclaims dead rows.
        if self._conn.dialect.name == "sqlite":
            self._conn.exec_driver_sql("PRAGMA secure_delete = ON")

    def rewrap(self, client_id: str, version: int, wrapped: str, wrapper_key_id: str) -> None:
        self._secure_delete()
        query = update(data_keys_table).where(
            data_keys_table.c.client_id == client_id, data_keys_table.c.key_version == version
        )
        self._conn.execute(query.values(wrapped=wrapped, wrapper_key_id=wrapper_key_id))

    def set_state(self, client_id: str, version: int, state: str) -> None:
        query = update(data_keys_table).where(
            data_keys_table.c.client_id == client_id, data_keys_table.c.key_version == version
        )
        self._conn.execute(query.values(state=state))

    def destroy(self, client_id: str, versions: Sequence[int] | None = None) -> int:
        self._secure_delete()
        query = delete(data_keys_table).where(data_keys_table.c.client_id == client_id)
        if versions is not None:
            query = query.where(data_keys_table.c.key_version.in_(list(versions)))
        return int(self._conn.execute(query).rowcount or 0)


class MemoryDataKeyRows:
    """The rows in a dict keyed (client_id, version), for the in-memory unit of work."""

    def __init__(self, rows: dict[tuple[str, int], DataKeyRecord]) -> None:
        self._rows = rows

    def of_client(self, client_id: str) -> list[DataKeyRecord]:
        return sorted(
            (r for r in self._rows.values() if r.client_id == client_id),
            key=lambda r: r.key_version,
        )

    def all(self) -> list[DataKeyRecord]:
        return [self._rows[k] for k in sorted(self._rows)]

    def add(self, record: DataKeyRecord) -> None:
        key = (record.client_id, record.key_version)
        if key in self._rows or any(r.key_id == record.key_id for r in self._rows.values()):
            raise ValueError("data key already exists")
        self._rows[key] = record

    def rewrap(self, client_id: str, version: int, wrapped: str, wrapper_key_id: str) -> None:
        old = self._rows[(client_id, version)]
        self._rows[(client_id, version)] = replace(
            old, wrapped=wrapped, wrapper_key_id=wrapper_key_id
        )

    def set_state(self, client_id: str, version: int, state: str) -> None:
        self._rows[(client_id, version)] = replace(self._rows[(client_id, version)], state=state)

    def destroy(self, client_id: str, versions: Sequence[int] | None = None) -> int:
        doomed = [
            k for k in self._rows if k[0] == client_id and (versions is None or k[1] in versions)
        ]
        for key in doomed:
            del self._rows[key]
        return len(doomed)
