"""SQLite audit tables (the projections database, separate from the event store).

Every row carries the ``seq`` of the event that produced it, so a table can
be compared with a replay seq by seq. ``client_state`` is the current tier
and status per client, which the history rows are built from.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, Table, Text

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event_id", Text, nullable=False),
    Column("occurred_at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("client_id", Text, nullable=True),
    Column("type", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("summary", Text, nullable=False),
    # The stored data exactly as in the log (canonical JSON).
    Column("data", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_audit_log_client", "client_id", "seq"),
    Index("ix_audit_log_type", "type", "seq"),
)

client_state = Table(
    "client_state",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("updated_seq", Integer, nullable=False),
)

client_history = Table(
    "client_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("occurred_at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("change", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_client_history_client", "client_id", "seq"),
)

key_history = Table(
    "key_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("occurred_at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("scopes", Text, nullable=True),
    Column("label", Text, nullable=True),
    # From api_key.issued v2; NULL for keys issued before (and for revocations).
    Column("expires_at", Text, nullable=True),
    Column("allowed_cidrs", Text, nullable=True),
    Index("ix_key_history_key", "key_id", "seq"),
)

billing_ledger = Table(
    "billing_ledger",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("occurred_at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount_cents", Integer, nullable=True),
    Column("currency", Text, nullable=True),
    Column("reference", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_billing_ledger_client", "client_id", "seq"),
)

usage = Table(
    "usage",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("period_start", Text, nullable=False),
    Column("period_end", Text, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("queries", Integer, nullable=False),
    Column("vectors_upserted", Integer, nullable=False),
    Column("vectors_stored", Integer, nullable=False),
    Column("bytes_stored", Integer, nullable=False),
    Index("ix_usage_client", "client_id", "period_start"),
)

collection_history = Table(
    "collection_history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("occurred_at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("spec", Text, nullable=True),
)

census_index = Table(
    "census_index",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("occurred_at", Text, nullable=False),
    Column("archive", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("clients", Integer, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("seq", Integer, nullable=False),
)

# The projected tables, in the order verify reports them; checkpoints are bookkeeping.
PROJECTED: tuple[Table, ...] = (
    audit_log,
    client_state,
    client_history,
    key_history,
    billing_ledger,
    usage,
    collection_history,
    census_index,
)
