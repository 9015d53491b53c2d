"""An event stored as v1 is read back as the current version; the row is never rewritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventlog.events import ClientPaused
from eventlog.hashchain import GENESIS_HASH, canonical_json, chain_hash
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore


def test_stored_v1_client_paused_is_upcast_on_read(tmp_path: Path) -> None:
    db = tmp_path / "control.sqlite3"
    store = SqliteEventStore(open_engine(db))
    # A ClientPaused row exactly as code of schema_version 1 wrote it: no "automatic".
    fields = {
        "seq": 1,
        "event_id": "e" * 32,
        "type": "client.paused",
        "schema_version": 1,
        "occurred_at": "2024-05-01T10:00:00.000000Z",
        "actor": "admin",
        "client_id": "cold",
        "data": {"reason": "unpaid"},
    }
    digest = chain_hash(GENESIS_HASH, **fields)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                1,
                fields["event_id"],
                "client.paused",
                1,
                fields["occurred_at"],
                "admin",
                "cold",
                canonical_json(fields["data"]).decode(),
                GENESIS_HASH,
                digest,
            ),
        )
    assert ClientPaused.schema_version == 2
    (stored,) = store.read()
    assert stored.schema_version == 1 and stored.data == {"reason": "unpaid"}
    assert stored.to_event() == ClientPaused(client_id="cold", reason="unpaid", automatic=False)
    assert store.verify_chain().ok  # the v1 row is still exactly what was hashed
    (again,) = store.append([ClientPaused(client_id="cold", reason="x")], "admin")
    assert again.schema_version == 2 and again.data["automatic"] is False


def test_v1_tier_change_reads_as_v2_without_a_reason() -> None:
    from eventlog.events import TierChanged, decode_event

    v1 = {"from_tier": "free", "to_tier": "premium"}
    event = decode_event("client.tier_changed", 1, v1, "c1")
    assert event == TierChanged(client_id="c1", from_tier="free", to_tier="premium", reason=None)
    assert TierChanged.schema_version == 2
