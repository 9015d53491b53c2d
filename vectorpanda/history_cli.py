"""``vectorpanda audit state`` and ``audit changes``: a client as of any moment, from the log.

They read the event store in the data directory directly, so they answer with
the coordinator and the broker down. Same fold as ``GET /admin/v1/clients/{id}/history``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from coordinator.history.model import FIELDS, ClientAsOf
from coordinator.history.moments import parse_moment
from vectorpanda.settings import load_settings


def _moment(flag: str, text: str) -> datetime:
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise SystemExit(f"vectorpanda audit: {flag}: {exc}") from None


def _optional_moment(flag: str, text: str | None) -> datetime | None:
    return None if text is None else _moment(flag, text)


def state_document(state: ClientAsOf) -> dict[str, Any]:
    """The history answer in the admin API's JSON shape."""
    return {
        "client_id": state.client_id,
        "name": state.name,
        "email": state.email,
        "tier": state.tier,
        "status": state.status,
        "keys": [
            {
                **asdict(k),
                "scopes": list(k.scopes),
                "allowed_cidrs": list(k.allowed_cidrs),
            }
            for k in state.keys
        ],
        "collections": [asdict(c) for c in state.collections],
        "billing": {
            "balances": [{**asdict(b), "balance_cents": b.balance_cents} for b in state.balances],
            "failed_payments": state.failed_payments,
        },
        "event_seq": state.event_seq,
        "event_hash": state.event_hash,
    }


def _print_state(doc: dict[str, Any], at: str) -> None:
    print(f"{doc['name']} <{doc['email']}> ({doc['client_id']}) as of {at}")
    print(f"  tier {doc['tier']}, status {doc['status']}")
    for k in doc["keys"]:
        revoked = f", revoked {k['revoked_at']} by {k['revoked_by']}" if k["revoked_at"] else ""
        print(
            f"  key {k['key_id']} [{','.join(k['scopes'])}] issued {k['issued_at']} "
            f"by {k['issued_by']}{revoked}"
        )
    for c in doc["collections"]:
        print(f"  collection {c['name']} ({c['dimension']}-d {c['metric']}, {c['index']})")
    for b in doc["billing"]["balances"]:
        print(f"  owes {b['balance_cents'] / 100:.2f} {b['currency']}")
    print(f"  last event folded: seq {doc['event_seq']} hash {doc['event_hash']}")


def cmd_state(args: argparse.Namespace) -> int:
    from coordinator.accounts.model import ClientNotFound
    from coordinator.history.service import state_as_of
    from vectorpanda.control_db import audit_event_log

    at = _moment("--at", args.at)
    store = audit_event_log(load_settings(Path(args.data_dir)))
    try:
        state = state_as_of(store, args.client, at)
    except ClientNotFound:
        print(f"vectorpanda audit state: no client {args.client} at {args.at}", file=sys.stderr)
        return 1
    doc = state_document(state)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_state(doc, args.at)
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    from coordinator.accounts.model import ClientNotFound
    from coordinator.history.service import changes_between
    from vectorpanda.control_db import audit_event_log

    since, until = _optional_moment("--since", args.since), _optional_moment("--until", args.until)
    store = audit_event_log(load_settings(Path(args.data_dir)))
    try:
        changes = changes_between(store, args.client, since, until, args.field)
    except ClientNotFound:
        print(f"vectorpanda audit changes: no client {args.client}", file=sys.stderr)
        return 1
    rows = [
        {
            "at": c.at,
            "field": c.field,
            "from": c.from_,
            "to": c.to,
            "actor": c.actor,
            "reason": c.reason,
            "event_seq": c.event_seq,
        }
        for c in changes
    ]
    if args.json:
        print(json.dumps({"changes": rows}, indent=2))
        return 0
    for r in rows:
        why = f"  ({r['reason']})" if r["reason"] else ""
        print(f"{r['at']}  {r['field']:<11} {r['from']!s} -> {r['to']!s}  by {r['actor']}{why}")
    return 0


def add_history_commands(audit_sub: Any, data_dir_arg: Any) -> None:
    """Register ``audit state`` and ``audit changes``."""
    state = audit_sub.add_parser("state", help="a client's tier, status, keys... as of a moment")
    state.add_argument("--client", required=True, help="the client id")
    state.add_argument("--at", required=True, help="RFC 3339 time, e.g. 2026-03-03T12:00:00Z")
    state.add_argument("--json", action="store_true", help="the admin API's JSON document")
    data_dir_arg(state)
    state.set_defaults(func=cmd_state)

    changes = audit_sub.add_parser("changes", help="who changed what of a client, when and why")
    changes.add_argument("--client", required=True, help="the client id")
    changes.add_argument("--since", default=None, help="RFC 3339 time (default: the beginning)")
    changes.add_argument(
        "--until", default=None, help="RFC 3339 time (default: the end of the log)"
    )
    changes.add_argument("--field", default=None, choices=FIELDS, help="only this field")
    changes.add_argument("--json", action="store_true", help="the admin API's JSON document")
    data_dir_arg(changes)
    changes.set_defaults(func=cmd_changes)
