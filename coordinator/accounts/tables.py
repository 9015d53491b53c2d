"""Tables of the accounts write model (same database as the event store)."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, MetaData, Table, Text

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

# Each client's data keys, stored only wrapped by the master key (a mutable table, never
# an event: a key must be destroyable). Deleting the client deletes its rows in the same
# transaction as its client.deleted event (crypto-shredding).
data_keys_table = Table(
    "client_data_keys",
    metadata,
    Column("client_id", Text, primary_key=True),
    Column("key_version", Integer, primary_key=True),
    Column("key_id", Text, nullable=False, unique=True),
    # hex of the AES-KW wrapped key; ``wrapper_key_id`` names the master key that wrapped it
    Column("wrapped", Text, nullable=False),
    Column("wrapper_key_id", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    # "active" (in use), "rotating" (added by a rotation not finished yet: new files are
    # sealed with it), "retired" (replaced; kept so older backups stay restorable)
    Column("state", Text, nullable=False, server_default="active"),
)
