"""The audit projections and the dead-letter record join the shared database.

With the control plane on PostgreSQL every coordinator (and the projections
process) projects into one set of audit tables with one checkpoint, and records
dead letters in one table, instead of a file of its own each. With the embedded
SQLite default the audit tables keep ``audit.sqlite3`` and the dead letters
``dead_letters.sqlite3`` (their own files, created by their adapters as before),
so on SQLite this revision creates nothing.

The tables are a frozen copy of ``projections/tables.py`` and
``eventlog/dead_letters.py`` as of this revision; seqs, counts and amounts are
64-bit, and the keys and timestamps that are ordered or range-compared use the
"C" collation (byte order, as SQLite compares), so a table's digest is the same
on either dialect.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

meta = MetaData()
Ordered = postgresql.TEXT(collation="C")


def _seq() -> Column[int]:
    return Column("seq", BigInteger, primary_key=True, autoincrement=False)


Table(
    "audit_log",
    meta,
    _seq(),
    Column("event_id", Text, nullable=False),
    Column("occurred_at", Ordered, nullable=False),
    Column("actor", Text, nullable=False),
    Column("client_id", Text, nullable=True),
    Column("type", Text, nullable=False),
    Column("schema_version", BigInteger, nullable=False),
    Column("summary", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_audit_log_client", "client_id", "seq"),
    Index("ix_audit_log_type", "type", "seq"),
)
Table(
    "client_state",
    meta,
    Column("client_id", Ordered, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("updated_seq", BigInteger, nullable=False),
)
Table(
    "client_history",
    meta,
    _seq(),
    Column("client_id", Text, nullable=False),
    Column("occurred_at", Ordered, nullable=False),
    Column("actor", Text, nullable=False),
    Column("change", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_client_history_client", "client_id", "seq"),
)
Table(
    "key_history",
    meta,
    _seq(),
    Column("client_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("occurred_at", Ordered, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("scopes", Text, nullable=True),
    Column("label", Text, nullable=True),
    Column("expires_at", Text, nullable=True),
    Column("allowed_cidrs", Text, nullable=True),
    Index("ix_key_history_key", "key_id", "seq"),
)
Table(
    "billing_ledger",
    meta,
    _seq(),
    Column("client_id", Text, nullable=False),
    Column("occurred_at", Ordered, nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount_cents", BigInteger, nullable=True),
    Column("currency", Text, nullable=True),
    Column("reference", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_billing_ledger_client", "client_id", "seq"),
)
Table(
    "usage",
    meta,
    _seq(),
    Column("client_id", Text, nullable=False),
    Column("period_start", Ordered, nullable=False),
    Column("period_end", Ordered, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("queries", BigInteger, nullable=False),
    Column("vectors_upserted", BigInteger, nullable=False),
    Column("vectors_stored", BigInteger, nullable=False),
    Column("bytes_stored", BigInteger, nullable=False),
    Index("ix_usage_client", "client_id", "period_start"),
)
Table(
    "collection_history",
    meta,
    _seq(),
    Column("client_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("occurred_at", Ordered, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("spec", Text, nullable=True),
)
Table(
    "census_index",
    meta,
    _seq(),
    Column("occurred_at", Ordered, nullable=False),
    Column("archive", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("clients", BigInteger, nullable=False),
)
Table(
    "checkpoints",
    meta,
    Column("consumer", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
Table(
    "dead_letters",
    meta,
    Column("queue", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("times", Integer, nullable=False, server_default="1"),
    PrimaryKeyConstraint("queue", "digest"),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    meta.create_all(bind, checkfirst=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        meta.drop_all(bind, checkfirst=True)
