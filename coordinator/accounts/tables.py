"""Tables of the accounts write model (same database as the event store)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, MetaData, Table, Text

from eventlog.database import OrderedText

metadata = MetaData()

clients_table = Table(
    "clients",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", OrderedText, nullable=False),
)

api_keys_table = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("client_id", Text, ForeignKey("clients.client_id"), nullable=False),
    Column("label", Text, nullable=True),
    # JSON list in canonical scope order, e.g. ["read","write"].
    Column("scopes", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", OrderedText, nullable=False),
    Column("revoked_at", Text, nullable=True),
    # Added later: databases made before them get them at start-up (add_missing_columns).
    Column("expires_at", Text, nullable=True),
    # JSON list of normalised CIDRs; NULL: usable from any address.
    Column("allowed_cidrs", Text, nullable=True),
    # Coarse, written off the request path at most once a minute per key.
    Column("last_used_at", Text, nullable=True),
    Index("ix_api_keys_client", "client_id", "created_at"),
)

# Named admin identities; like API keys, only the HMAC digest of a token is kept.
operators_table = Table(
    "operators",
    metadata,
    Column("operator_id", Text, primary_key=True),
    Column("name", OrderedText, nullable=False, unique=True),
    Column("email", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("created_at", OrderedText, nullable=False),
    Column("revoked_at", Text, nullable=True),
)
