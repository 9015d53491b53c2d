"""The SHA-256 hash chain over stored events, and its verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

GENESIS_HASH = "0" * 64
# A verify report names the first breaks; a wholly forged log need not list every row.
MAX_REPORTED_MISMATCHES = 100


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def chain_hash(
    prev_hash: str,
    *,
    seq: int,
    event_id: str,
    type: str,
    schema_version: int,
    occurred_at: str,
    actor: str,
    client_id: str | None,
    data: dict[str, Any],
) -> str:
    """sha256(prev_hash || canonical JSON of the event's recorded fields), hex."""
    body = canonical_json(
        {
            "seq": seq,
            "event_id": event_id,
            "type": type,
            "schema_version": schema_version,
            "occurred_at": occurred_at,
            "actor": actor,
            "client_id": client_id,
            "data": data,
        }
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One stored row as the verifier sees it (data still as the stored text)."""

    seq: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: str
    actor: str
    client_id: str | None
    data_json: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A row whose link in the chain does not hold."""

    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """Outcome of walking the whole chain from genesis."""

    ok: bool
    events: int
    head_hash: str
    mismatches: list[Mismatch] = field(default_factory=list)


def check_link(row: ChainRow, prev_seq: int, prev_hash: str) -> tuple[str | None, Any]:
    """Why ``row`` does not link after (prev_seq, prev_hash), or None; plus its parsed data."""
    if row.seq != prev_seq + 1:
        return f"seq gap: expected {prev_seq + 1}, found {row.seq}", None
    if row.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash", None
    try:
        data = orjson.loads(row.data_json)
    except orjson.JSONDecodeError:
        return "data is not valid JSON", None
    if not isinstance(data, dict):
        return "data is not a JSON object", None
    if canonical_json(data).decode("utf-8") != row.data_json:
        return "data is not in canonical form", data
    # The stored text is canonical, so it can stand in for re-serialising the dict.
    body = canonical_json(
        {
            "seq": row.seq,
            "event_id": row.event_id,
            "type": row.type,
            "schema_version": row.schema_version,
            "occurred_at": row.occurred_at,
            "actor": row.actor,
            "client_id": row.client_id,
            "data": orjson.Fragment(row.data_json),
        }
    )
    if hashlib.sha256(row.prev_hash.encode("ascii") + body).hexdigest() != row.hash:
        return "hash does not match the event's contents", data
    return None, data


def _check_row(row: ChainRow, prev_seq: int, prev_hash: str) -> str | None:
    return check_link(row, prev_seq, prev_hash)[0]


def verify_rows(
    rows: Iterable[ChainRow], prev_seq: int = 0, prev_hash: str = GENESIS_HASH
) -> ChainReport:
    """Walk rows in seq order and report every broken link (first ones first).

    ``prev_seq`` / ``prev_hash``: the link the first row must follow (genesis by default).
    """
    count = 0
    mismatches: list[Mismatch] = []
    for row in rows:
        count += 1
        reason = _check_row(row, prev_seq, prev_hash)
        if reason is not None and len(mismatches) < MAX_REPORTED_MISMATCHES:
            mismatches.append(Mismatch(seq=row.seq, reason=reason))
        # Continue from the stored values so one tampered row is reported once,
        # not as a cascade over every later row.
        prev_seq, prev_hash = row.seq, row.hash
    return ChainReport(ok=not mismatches, events=count, head_hash=prev_hash, mismatches=mismatches)
