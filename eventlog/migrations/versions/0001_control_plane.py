"""The control plane as the create-all code left it: events, outbox, accounts, triggers.

Revision 0001 both creates an empty database and adopts one an earlier
release made with its idempotent ``create_all`` start-up: every table,
index and trigger is created only where missing, and a table that exists
gains the nullable columns added to it since (``api_keys``' expiry, networks
and last use). No row is touched. The table definitions are frozen here,
as they stood at this revision; later changes are later revisions.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
)
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ordered = Text().with_variant(postgresql.TEXT(collation="C"), "postgresql")
_seq = BigInteger().with_variant(Integer(), "sqlite")
meta = MetaData()

Table(
    "events",
    meta,
    Column("seq", _seq, primary_key=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("occurred_at", _ordered, nullable=False),
    Column("actor", Text, nullable=False),
    Column("client_id", Text, nullable=True),
    Column("data", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_events_client_seq", "client_id", "seq"),
    Index("ix_events_type_seq", "type", "seq"),
    Index("ix_events_client_time", "client_id", "occurred_at"),
    sqlite_autoincrement=True,
)
Table(
    "outbox",
    meta,
    Column("seq", _seq, ForeignKey("events.seq"), primary_key=True, autoincrement=False),
)
Table(
    "clients",
    meta,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", _ordered, nullable=False),
)
Table(
    "api_keys",
    meta,
    Column("key_id", Text, primary_key=True),
    Column("client_id", Text, ForeignKey("clients.client_id"), nullable=False),
    Column("label", Text, nullable=True),
    Column("scopes", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", _ordered, nullable=False),
    Column("revoked_at", Text, nullable=True),
    Column("expires_at", Text, nullable=True),
    Column("allowed_cidrs", Text, nullable=True),
    Column("last_used_at", Text, nullable=True),
    Index("ix_api_keys_client", "client_id", "created_at"),
)
Table(
    "operators",
    meta,
    Column("operator_id", Text, primary_key=True),
    Column("name", _ordered, nullable=False, unique=True),
    Column("email", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", _ordered, nullable=False),
    Column("revoked_at", Text, nullable=True),
)
Table(
    "client_data_keys",
    meta,
    Column("client_id", Text, primary_key=True),
    Column("key_version", Integer, primary_key=True),
    Column("key_id", Text, nullable=False, unique=True),
    Column("wrapped", Text, nullable=False),
    Column("wrapper_key_id", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("state", Text, nullable=False, server_default="active"),
)

_PG_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION vp_events_append_only() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'events are append-only' "
    "USING ERRCODE = 'integrity_constraint_violation'; END $$",
    "CREATE OR REPLACE TRIGGER events_no_update BEFORE UPDATE ON events "
    "FOR EACH ROW EXECUTE FUNCTION vp_events_append_only()",
    "CREATE OR REPLACE TRIGGER events_no_delete BEFORE DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION vp_events_append_only()",
    "CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION vp_events_append_only()",
)
_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
)


def upgrade() -> None:
    bind = op.get_bind()
    present = set(inspect(bind).get_table_names())
    meta.create_all(bind, checkfirst=True)
    for table in meta.sorted_tables:
        if table.name not in present:
            continue
        # An adopted table: the columns and indexes added to it after it was made.
        columns = {c["name"] for c in inspect(bind).get_columns(table.name)}
        for column in table.columns:
            if column.name not in columns:
                if not column.nullable:
                    raise RuntimeError(f"{table.name}.{column.name} is missing and not nullable")
                op.add_column(table.name, Column(column.name, column.type, nullable=True))
        indexes = {i["name"] for i in inspect(bind).get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(bind)
    postgres = bind.dialect.name == "postgresql"
    for ddl in _PG_APPEND_ONLY if postgres else _SQLITE_APPEND_ONLY:
        op.execute(ddl)


def downgrade() -> None:
    raise NotImplementedError("the control plane's first revision is not undone")
