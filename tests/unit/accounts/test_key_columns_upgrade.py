"""Databases made before keys had expiry, CIDRs and last use are upgraded in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coordinator.accounts import Accounts
from coordinator.accounts.model import key_digest
from projections.audit_store import AuditProjection

PEPPER = b"upgrade-pepper-0123456789abcdef"
KEY_ID = "0123456789abcdef"
API_KEY = f"vp_{KEY_ID}_" + "k" * 43

OLD_ACCOUNTS = """
CREATE TABLE clients (client_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    tier TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE api_keys (key_id TEXT PRIMARY KEY, client_id TEXT NOT NULL REFERENCES clients,
    label TEXT, scopes TEXT NOT NULL, digest TEXT NOT NULL, created_at TEXT NOT NULL,
    revoked_at TEXT);
"""


async def test_an_old_control_database_gains_the_key_columns_and_old_keys_still_work(
    tmp_path: Path,
) -> None:
    db = tmp_path / "control.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_ACCOUNTS)
        conn.execute(
            "INSERT INTO clients VALUES ('c1', 'Old', 'o@old.example', 'free', 'active', "
            "'2024-01-01T00:00:00.000000Z')"
        )
        conn.execute(
            "INSERT INTO api_keys VALUES (?, 'c1', NULL, '[\"read\"]', ?, "
            "'2024-01-01T00:00:00.000000Z', NULL)",
            (KEY_ID, key_digest(PEPPER, API_KEY)),
        )
    accounts = Accounts(db, PEPPER)
    try:
        principal = await accounts.authenticate(API_KEY)
        # A key from before expiry existed never expires: nothing is imposed afterwards.
        assert principal is not None and principal.expires_at_s is None
        assert principal.networks == ()
        (view,) = await accounts.list_api_keys("c1")
        assert (view.expires_at, view.allowed_cidrs, view.last_used_at) == (None, (), None)
        accounts.key_uses.note(KEY_ID)
        assert await accounts.key_uses.flush() == 1
        (view,) = await accounts.list_api_keys("c1")
        assert view.last_used_at is not None
    finally:
        await accounts.close()
    columns = {row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(api_keys)")}
    assert {"expires_at", "allowed_cidrs", "last_used_at"} <= columns


def test_an_old_audit_database_gains_the_key_history_columns(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE key_history (seq INTEGER PRIMARY KEY, client_id TEXT NOT NULL, "
            "key_id TEXT NOT NULL, occurred_at TEXT NOT NULL, actor TEXT NOT NULL, "
            "action TEXT NOT NULL, scopes TEXT, label TEXT)"
        )
    projection = AuditProjection.at(db)
    projection.engine.dispose()
    columns = {row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(key_history)")}
    assert {"expires_at", "allowed_cidrs"} <= columns
