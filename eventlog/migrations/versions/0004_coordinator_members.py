"""The coordinator group's membership in the shared database.

With the control plane on PostgreSQL the members of one coordinator group may run on
different hosts: each keeps a row here with a heartbeat (coordinator/membership.py):
the seq of the event log it has applied to its key cache (a revocation, pause or tier
change returns once every live member has applied it), the internal address of its
placement API and whether it leads (followers find the leader here), and its rate-limit
domain (the processes sharing one rate-limit table: a client's rate is split over the
live domains). With the embedded SQLite default the group is one host's processes and
shares these through files under ``<data>/run``, so on SQLite this revision creates
nothing.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, MetaData, Table, Text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

meta = MetaData()

Table(
    "coordinator_members",
    meta,
    Column("member_id", Text, primary_key=True),
    Column("domain", Text, nullable=False),
    Column("internal_url", Text, nullable=True),
    Column("is_leader", Boolean, nullable=False, server_default="false"),
    Column("applied_seq", BigInteger, nullable=False, server_default="0"),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Index("ix_coordinator_members_last_seen", "last_seen"),
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
