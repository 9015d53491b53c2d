"""The audit tables: their own SQLite file beside the event store, or the PostgreSQL
control database itself when ``VP_DATABASE_URL`` names one.

Every row carries the ``seq`` of the event that produced it, so a table can
be compared with a replay seq by seq. ``client_state`` is the current tier
and status per client, which the history rows are built from.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, Table, Text

from eventlog.database import OrderedText

metadata = MetaData()

# INTEGER on SQLite (a seq key stays the rowid), 64-bit on PostgreSQL: seqs, byte counts
# and amounts outgrow int4 there.
Int = Integer().with_variant(BigInteger(), "postgresql")

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("event_id", Text, nullable=False),
    Column("occurred_at", OrderedText, nullable=False),
    Column("actor", Text, nullable=False),
    Column("client_id", Text, nullable=True),
    Column("type", Text, nullable=False),
    Column("schema_version", Int, nullable=False),
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
    Column("client_id", OrderedText, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("updated_seq", Int, nullable=False),
)

client_history = Table(
    "client_history",
    metadata,
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("occurred_at", OrderedText, nullable=False),
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
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("occurred_at", OrderedText, nullable=False),
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
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("occurred_at", OrderedText, nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount_cents", Int, nullable=True),
    Column("currency", Text, nullable=True),
    Column("reference", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_billing_ledger_client", "client_id", "seq"),
)

usage = Table(
    "usage",
    metadata,
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("period_start", OrderedText, nullable=False),
    Column("period_end", OrderedText, nullable=False),
    Column("requests", Int, nullable=False),
    Column("queries", Int, nullable=False),
    Column("vectors_upserted", Int, nullable=False),
    Column("vectors_stored", Int, nullable=False),
    Column("bytes_stored", Int, nullable=False),
    Index("ix_usage_client", "client_id", "period_start"),
)

collection_history = Table(
    "collection_history",
    metadata,
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("client_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("occurred_at", OrderedText, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("spec", Text, nullable=True),
)

census_index = Table(
    "census_index",
    metadata,
    Column("seq", Int, primary_key=True, autoincrement=False),
    Column("occurred_at", OrderedText, nullable=False),
    Column("archive", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("clients", Int, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("consumer", Text, primary_key=True),
    Column("seq", Int, nullable=False),
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
