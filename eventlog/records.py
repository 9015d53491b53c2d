"""The event log's records and rules, apart from any database: pure, no ORM or broker.

``StoredEvent`` is the one spelling of an event as recorded; everything that
writes, sends or shows a record (the SQL adapters, the bus message, the JSON
export, the admin API's event body) takes its field list from here.
``chain_events`` numbers and hash-links new events; ``EventStore`` is what every
store adapter offers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from eventlog.events import Event, client_id_of, decode_event, encode_event
from eventlog.hashchain import ChainReport, ChainRow, canonical_json, chain_hash

MAX_READ_LIMIT = 1000


def utc_now() -> str:
    """ISO-8601 UTC with microseconds and a 'Z' suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as recorded: its place in the log, provenance and chain link."""

    seq: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: str
    actor: str
    client_id: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_event(self) -> Event:
        """The typed event, upcast to the current schema version."""
        return decode_event(self.type, self.schema_version, self.data, self.client_id)

    def record(self) -> dict[str, Any]:
        """The fields by name, ``data`` shared not copied (``asdict`` deep-copies it)."""
        return {name: getattr(self, name) for name in RECORD_FIELDS}

    def chain_row(self) -> ChainRow:
        """The record as the chain verifier reads it, ``data`` as its canonical text."""
        return chain_row(self.record(), canonical_json(self.data).decode("utf-8"))


# Every field of a record, in order: the export line, the bus message, the table row.
RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StoredEvent))
# The fields the chain hash covers: all but the link itself.
HASHED_FIELDS: tuple[str, ...] = tuple(f for f in RECORD_FIELDS if f not in ("prev_hash", "hash"))


def chain_row(record: Mapping[Any, Any], data_json: str) -> ChainRow:
    """A ``ChainRow`` from a record's fields (any mapping: a SQL row too) and its data text."""
    return ChainRow(
        **{name: record[name] for name in RECORD_FIELDS if name != "data"}, data_json=data_json
    )


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last link: seq 0 and the genesis hash for an empty log."""

    seq: int
    hash: str


class EventStore(Protocol):
    """What every event store offers, whatever holds the rows."""

    def append(
        self, events: Sequence[Event], actor: str, occurred_at: str | None = None
    ) -> list[StoredEvent]: ...

    def read(
        self,
        after_seq: int = 0,
        limit: int = 100,
        client_id: str | None = None,
        type: str | None = None,
    ) -> list[StoredEvent]: ...

    def client_events(
        self, client_id: str, until: str, types: Sequence[str] | None = None
    ) -> Iterator[StoredEvent]: ...

    def head(self) -> ChainHead: ...

    def verify_chain(self) -> ChainReport: ...

    def pending_outbox(self, limit: int = 100) -> list[StoredEvent]: ...

    def mark_published(self, seqs: Sequence[int]) -> None: ...


def chain_events(
    head: ChainHead, events: Sequence[Event], actor: str, occurred_at: str | None
) -> list[StoredEvent]:
    """Number, timestamp and hash-link new events after ``head``."""
    return [stored for stored, _ in chain_events_with_data(head, events, actor, occurred_at)]


def chain_events_with_data(
    head: ChainHead, events: Sequence[Event], actor: str, occurred_at: str | None
) -> list[tuple[StoredEvent, str]]:
    """``chain_events``, each record with its ``data`` as stored (canonical JSON text)."""
    if not actor or len(actor) > 64:
        raise ValueError("actor must be 1-64 characters")
    when = occurred_at or utc_now()
    out: list[tuple[StoredEvent, str]] = []
    seq, prev = head.seq, head.hash
    for event in events:
        seq += 1
        # Serialised once: the stored text, the hash's input (as is) and, parsed back,
        # ``data``, so the stored dict is exactly what a reader will parse back.
        data_json = canonical_json(encode_event(event))
        hashed: dict[str, Any] = {
            "seq": seq,
            "event_id": uuid.uuid4().hex,
            "type": event.event_type,
            "schema_version": event.schema_version,
            "occurred_at": when,
            "actor": actor,
            "client_id": client_id_of(event),
            "data": orjson.Fragment(data_json),
        }
        digest = chain_hash(prev, **hashed)
        hashed["data"] = orjson.loads(data_json)
        out.append((StoredEvent(**hashed, prev_hash=prev, hash=digest), data_json.decode("utf-8")))
        prev = digest
    return out


def check_read_args(after_seq: int, limit: int) -> None:
    """Reject reads no caller should make."""
    if after_seq < 0:
        raise ValueError("after_seq must be >= 0")
    if not 1 <= limit <= MAX_READ_LIMIT:
        raise ValueError(f"limit must be 1-{MAX_READ_LIMIT}")
