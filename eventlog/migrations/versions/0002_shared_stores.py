"""The stores every coordinator shares when the control plane is on PostgreSQL.

Consumer checkpoints, the notifier's contacts and mail outbox, the dashboard's
server-side sessions and the scheduler's job store. With the embedded SQLite
default each of these keeps a file of its own beside the control database
(``notifier.sqlite3``, ``sessions.sqlite3``, ``scheduler.sqlite3``), as
before, so on SQLite this revision creates nothing.
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
    Unicode,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

meta = MetaData()

Table(
    "consumer_checkpoints",
    meta,
    Column("consumer", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)
Table(
    "notifier_contacts",
    meta,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
)
Table(
    "notifier_outbox",
    meta,
    Column("event_id", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("client_name", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt", Float, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("sent_at", Float),
    Column("dead_at", Float),
    Column("dead_reason", Text),
    PrimaryKeyConstraint("event_id", "recipient"),
    Index("ix_notifier_outbox_pending", "sent_at", "next_attempt"),
)
Table(
    "dashboard_sessions",
    meta,
    Column("id_hash", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("email", Text),
    Column("role", Text),
    Column("client_id", Text),
    Column("provider", Text),
    Column("state", Text),
    Column("code_verifier", Text),
    Column("nonce", Text),
    Index("ix_dashboard_sessions_seen", "last_seen_at"),
)
# APScheduler 3's SQLAlchemyJobStore table, exactly as it would create it itself.
Table(
    "apscheduler_jobs",
    meta,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
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
