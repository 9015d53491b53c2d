"""``vectorpanda audit verify-receipt``: check a client's deletion receipt against the log.

The receipt (as ``GET /admin/v1/clients/{id}/deletion-receipt`` returns it, saved to a
file) is checked against the event store directly, so this works with the coordinator
down. It passes when:

* the event at ``event_seq`` is that client's ``client.deleted``, with ``event_hash``;
* its recorded receipt says exactly what the file says (keys, files and hashes, head);
* it links right after the chain head the receipt names, and the whole hash chain is
  intact (so the event was not edited or inserted later);
* none of the destroyed data keys exists any more in the control database;
* with ``--check-files``: no file of the client is left under the data directory, and
  any file given with ``--copy`` (a backup, an image) that the receipt lists has the
  recorded hash (so it is the very ciphertext whose key was destroyed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from eventlog.events import ClientDeleted
from vectorpanda.settings import Settings, load_settings


def _load_receipt(path: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"vectorpanda audit verify-receipt: cannot read {path}: {exc}") from None
    needed = {"client_id", "event_seq", "event_hash", "files", "data_key_ids"}
    if not isinstance(doc, dict) or not needed <= set(doc):
        raise SystemExit(
            "vectorpanda audit verify-receipt: not a deletion receipt "
            f"(needs {', '.join(sorted(needed))})"
        )
    return doc


def _keys_left(settings: Settings, key_ids: list[str]) -> list[str]:
    if not key_ids:
        return []
    uri = f"file:{settings.control_db}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        try:
            rows = db.execute("SELECT key_id FROM client_data_keys").fetchall()
        except sqlite3.OperationalError:  # a log from before encryption at rest
            return []
    present = {r[0] for r in rows}
    return [k for k in key_ids if k in present]


def verify_receipt(store: Any, settings: Settings, receipt: dict[str, Any]) -> dict[str, bool]:
    """Each check's outcome (all must be True)."""
    seq = int(receipt["event_seq"])
    found = store.read(after_seq=seq - 1, limit=1)
    event = found[0] if found and found[0].seq == seq else None
    recorded = (event.to_event().model_dump(mode="json").get("receipt") if event else None) or {}
    listed = {(f["path"], f["sha256"]) for f in receipt["files"]}
    chain = store.verify_chain()
    return {
        "event_is_the_clients_deletion": event is not None
        and event.type == ClientDeleted.event_type
        and event.client_id == receipt["client_id"]
        and event.hash == receipt["event_hash"],
        "receipt_matches_the_event": bool(recorded)
        and {(f["path"], f["sha256"]) for f in recorded.get("files", [])} == listed
        and list(recorded.get("data_key_ids", [])) == list(receipt["data_key_ids"]),
        "event_follows_the_named_chain_head": event is not None
        and recorded.get("chain_head_seq") == seq - 1
        and recorded.get("chain_head_hash") == event.prev_hash
        and receipt.get("chain_head_hash", event.prev_hash) == event.prev_hash,
        "hash_chain_intact": bool(chain.ok),
        "data_keys_destroyed": not _keys_left(settings, list(receipt["data_key_ids"])),
    }


def _file_checks(settings: Settings, receipt: dict[str, Any], copies: list[str]) -> dict[str, bool]:
    client = receipt["client_id"]
    leftovers = [
        p
        for root in (settings.hot, settings.cold)
        for p in (root / client).rglob("*")
        if p.is_file() and p.name != ".lock"
    ]
    hashes = {f["sha256"] for f in receipt["files"]}
    copies_ok = all(hashlib.sha256(Path(c).read_bytes()).hexdigest() in hashes for c in copies)
    return {"no_files_left": not leftovers, "copies_are_the_shredded_ciphertext": copies_ok}


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    from vectorpanda.control_db import audit_event_log

    settings = load_settings(Path(args.data_dir))
    receipt = _load_receipt(args.receipt)
    checks = verify_receipt(audit_event_log(settings), settings, receipt)
    if args.check_files or args.copy:
        checks.update(_file_checks(settings, receipt, list(args.copy or [])))
    ok = all(checks.values())
    print(json.dumps({"ok": ok, "client_id": receipt["client_id"], "checks": checks}, indent=2))
    return 0 if ok else 1


def add_receipt_command(audit_sub: Any, data_dir_arg: Any) -> None:
    """Register ``audit verify-receipt``."""
    parser = audit_sub.add_parser(
        "verify-receipt", help="check a client's deletion receipt against the event log"
    )
    parser.add_argument("receipt", help="the receipt JSON (from GET .../deletion-receipt)")
    parser.add_argument(
        "--check-files", action="store_true", help="also check no file of the client is left"
    )
    parser.add_argument(
        "--copy",
        action="append",
        help="a kept copy of a removed file (repeatable): its hash must be in the receipt",
    )
    data_dir_arg(parser)
    parser.set_defaults(func=cmd_verify_receipt)
