"""``vectorpanda admin ...``: the admin API from a shell, so nobody needs curl to get a key.

The admin token is read from ``VP_ADMIN_TOKEN`` or from the data directory's
env file, never from an argument (arguments end up in shell history and
process lists). The URL comes from ``--url`` or ``VP_URL``; a private CA for
an https URL from ``VP_CA_BUNDLE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlog.events import Tier
from vectorpanda.client_cli import DEFAULT_URL, UsageError
from vectorpanda.master_key_cli import add_master_key_command
from vectorpanda.settings import env_file_path, read_env_file

if TYPE_CHECKING:
    import httpx

EVENT_FOLLOW_POLL_S = 1.0


class AdminFailed(Exception):
    """The service answered with an error, or could not be reached; exits with status 1."""


def admin_token(data_dir: Path) -> str:
    """``VP_ADMIN_TOKEN``, else the one in ``<data_dir>/vectorpanda.env``."""
    token = os.environ.get("VP_ADMIN_TOKEN", "").strip()
    if token:
        return token
    path = env_file_path(data_dir)
    if path.exists():
        token = read_env_file(path).get("VP_ADMIN_TOKEN", "").strip()
        if token:
            return token
    raise UsageError(
        f"No admin token: set VP_ADMIN_TOKEN, or point --data-dir at the data directory "
        f"whose vectorpanda.env holds it (looked in {path})."
    )


class AdminApi:
    """A thin client of ``/admin/v1`` that turns error bodies into one sentence.

    httpx and the SDK are imported here, not with the module: every process's command
    line (``vectorpanda worker`` too) parses these subcommands, and a worker or
    coordinator that never calls the admin API should not hold them in memory.
    """

    def __init__(self, url: str, token: str) -> None:
        import httpx

        from vectorpanda_client.base import tls_verify

        self.url = url.rstrip("/")
        self._http: httpx.Client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            verify=tls_verify(None),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise AdminFailed(f"cannot reach {self.url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                error = r.json()["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                detail = r.text[:200]
            raise AdminFailed(f"{method} {path} answered {r.status_code} {detail}")
        return None if r.status_code == 204 else r.json()

    def close(self) -> None:
        self._http.close()


def _show(args: argparse.Namespace, value: Any, human: str) -> None:
    print(json.dumps(value, indent=2, sort_keys=True) if args.json else human)


def _client_line(c: dict[str, Any]) -> str:
    return f"{c['client_id']}  {c['tier']:<8} {c['status']:<7} {c['name']} <{c['email']}>"


def cmd_clients_create(api: AdminApi, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"name": args.name, "email": args.email}
    if args.tier:
        body["tier"] = args.tier
    client = api.call("POST", "/admin/v1/clients", json=body)
    if args.id_only:
        print(client["client_id"])
        return
    _show(args, client, f"created {_client_line(client)}")


def cmd_clients_list(api: AdminApi, args: argparse.Namespace) -> None:
    clients = api.call("GET", "/admin/v1/clients")["clients"]
    _show(args, clients, "\n".join(_client_line(c) for c in clients) or "(no clients)")


def cmd_clients_show(api: AdminApi, args: argparse.Namespace) -> None:
    client = api.call("GET", f"/admin/v1/clients/{args.client_id}")
    _show(args, client, json.dumps(client, indent=2, sort_keys=True))


def cmd_keys_create(api: AdminApi, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"scopes": args.scopes.split(",")}
    if args.label:
        body["label"] = args.label
    if args.expires_at:
        body["expires_at"] = args.expires_at
    if args.allowed_cidr:
        body["allowed_cidrs"] = args.allowed_cidr
    issued = api.call("POST", f"/admin/v1/clients/{args.client_id}/keys", json=body)
    # The only time the secret is shown; as a line to paste into the client's shell.
    _show(args, issued, f"export VP_API_KEY={issued['api_key']}")


def cmd_keys_list(api: AdminApi, args: argparse.Namespace) -> None:
    keys = api.call("GET", f"/admin/v1/clients/{args.client_id}/keys")["keys"]
    lines = [
        f"{k['key_id']}  {','.join(k['scopes']):<18} "
        f"{'revoked' if k.get('revoked_at') else 'active':<7} "
        f"expires {(k.get('expires_at') or 'never')[:19]:<19} "
        f"used {(k.get('last_used_at') or 'never')[:19]:<19} "
        f"{','.join(k.get('allowed_cidrs') or []) or 'anywhere'} {k.get('label') or ''}"
        for k in keys
    ]
    _show(args, keys, "\n".join(lines) or "(no keys)")


def cmd_keys_revoke(api: AdminApi, args: argparse.Namespace) -> None:
    api.call("DELETE", f"/admin/v1/clients/{args.client_id}/keys/{args.key_id}")
    _show(args, {"revoked": args.key_id}, f"revoked {args.key_id}")


def _with_reason(body: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.reason:
        body["reason"] = args.reason
    return body


def cmd_tier(api: AdminApi, args: argparse.Namespace) -> None:
    body = _with_reason({"tier": args.tier}, args)
    client = api.call("POST", f"/admin/v1/clients/{args.client_id}/tier", json=body)
    _show(args, client, _client_line(client))


def cmd_pause(api: AdminApi, args: argparse.Namespace) -> None:
    body = _with_reason({}, args)
    client = api.call("POST", f"/admin/v1/clients/{args.client_id}/pause", json=body)
    _show(args, client, _client_line(client))


def cmd_resume(api: AdminApi, args: argparse.Namespace) -> None:
    body = _with_reason({}, args)
    client = api.call("POST", f"/admin/v1/clients/{args.client_id}/resume", json=body or None)
    _show(args, client, _client_line(client))


def cmd_billing(api: AdminApi, args: argparse.Namespace) -> None:
    body = _with_reason(
        {
            "kind": args.kind,
            "amount_cents": args.amount_cents,
            "currency": args.currency,
            "reference": args.reference,
        },
        args,
    )
    event = api.call("POST", f"/admin/v1/clients/{args.client_id}/billing", json=body)
    _show(args, event, f"recorded {event['type']} as event {event['seq']}")


def cmd_operators_create(api: AdminApi, args: argparse.Namespace) -> None:
    body = {"name": args.name, "email": args.email}
    out = api.call("POST", "/admin/v1/operators", json=body)
    # The token is shown only now, on the last line, for the operator to keep privately.
    human = (
        f"operator {out['name']} <{out['email']}> created: id {out['operator_id']}\n"
        f"events will name this operator as: {out['actor']}\n"
        f"admin token (shown only now; hand it over privately):\n{out['token']}"
    )
    _show(args, out, human)


def cmd_operators_list(api: AdminApi, args: argparse.Namespace) -> None:
    operators = api.call("GET", "/admin/v1/operators")["operators"]
    lines = [
        f"{o['operator_id']}  {o['name']:<20} {o['email']:<32} "
        f"{('revoked ' + o['revoked_at']) if o['revoked_at'] else 'active'}"
        for o in operators
    ]
    _show(args, operators, "\n".join(lines) or "(no operators)")


def cmd_operators_revoke(api: AdminApi, args: argparse.Namespace) -> None:
    body = _with_reason({}, args)
    out = api.call("DELETE", f"/admin/v1/operators/{args.operator_id}", json=body or None)
    _show(args, out, f"operator {out['name']} revoked at {out['revoked_at']}")


def _event_line(e: dict[str, Any]) -> str:
    return f"{e['seq']:>8}  {e['occurred_at']}  {e['type']:<28} {e['actor']:<16} {e['client_id']}"


def cmd_events(api: AdminApi, args: argparse.Namespace) -> None:
    after = args.after_seq
    while True:
        params: dict[str, Any] = {"after_seq": after, "limit": args.limit}
        if args.client_id:
            params["client_id"] = args.client_id
        if args.type:
            params["type"] = args.type
        page = api.call("GET", "/admin/v1/events", params=params)
        for event in page["events"]:
            print(json.dumps(event, sort_keys=True) if args.json else _event_line(event))
        sys.stdout.flush()
        after = page["next_after_seq"] if page["events"] else after
        if not args.follow:
            return
        if not page["events"]:
            time.sleep(EVENT_FOLLOW_POLL_S)


class DefaultsInHelp(argparse.HelpFormatter):
    """Adds "(default: X)" to options that have a default and do not state it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help=f"service URL (default: $VP_URL or {DEFAULT_URL})"
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("VP_DATA_DIR", "./vp-data"),
        help="where to find vectorpanda.env when VP_ADMIN_TOKEN is not set",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _command(sub: Any, name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        formatter_class=DefaultsInHelp,
    )
    _common(parser)
    parser.set_defaults(admin_func=func, func=run_admin)
    return parser


def add_admin_commands(sub: Any) -> None:
    """Register ``admin`` and its commands on the ``vectorpanda`` parser."""
    admin = sub.add_parser(
        "admin",
        help="clients, keys, tiers, pauses, billing and events through the admin API",
        description="The admin API from a shell. The admin token comes from VP_ADMIN_TOKEN "
        "or the data directory's vectorpanda.env, never from an argument.",
    )
    groups = admin.add_subparsers(dest="admin_command", required=True)
    add_master_key_command(groups)

    clients = groups.add_parser("clients", help="create, list and show clients")
    csub = clients.add_subparsers(dest="clients_command", required=True)
    p = _command(csub, "create", "create a client", cmd_clients_create)
    p.add_argument("--name", required=True, help="the client's name")
    p.add_argument("--email", required=True, help="the client's contact address")
    p.add_argument(
        "--id-only", action="store_true", help="print only the new client id, for CID=$(...)"
    )
    p.add_argument(
        "--tier",
        choices=[tier.value for tier in Tier],
        default=None,
        help="tier (the service's default: free)",
    )
    _command(csub, "list", "list every client", cmd_clients_list)
    p = _command(csub, "show", "show one client with its usage", cmd_clients_show)
    p.add_argument("client_id")

    keys = groups.add_parser("keys", help="issue, list and revoke a client's API keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = _command(
        ksub, "create", "issue a key; prints it once as `export VP_API_KEY=...`", cmd_keys_create
    )
    p.add_argument("client_id")
    p.add_argument(
        "--scopes", default="read,write,manage", help="comma-separated: read, write, manage"
    )
    p.add_argument("--label", default=None, help="a label to recognise the key by")
    p.add_argument(
        "--expires-at",
        default=None,
        help="RFC 3339 time the key stops working, e.g. 2030-01-31T00:00:00Z "
        "(default: the tier's maximum key lifetime)",
    )
    p.add_argument(
        "--allowed-cidr",
        action="append",
        default=None,
        help="a network the key may be used from (repeat for several; default: anywhere)",
    )
    p = _command(ksub, "list", "list a client's keys (never secrets)", cmd_keys_list)
    p.add_argument("client_id")
    p = _command(ksub, "revoke", "revoke a key; it stops working within 1 s", cmd_keys_revoke)
    p.add_argument("client_id")
    p.add_argument("key_id")

    p = _command(groups, "tier", "change a client's tier", cmd_tier)
    p.add_argument("client_id")
    p.add_argument("tier", choices=[tier.value for tier in Tier])
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    p = _command(groups, "pause", "pause a client (data moves to cold storage)", cmd_pause)
    p.add_argument("client_id")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    p = _command(groups, "resume", "resume a paused client", cmd_resume)
    p.add_argument("client_id")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    p = _command(groups, "billing", "record an invoice, a payment or a failed payment", cmd_billing)
    p.add_argument("client_id")
    p.add_argument(
        "--kind", required=True, choices=["invoice_issued", "payment_received", "payment_failed"]
    )
    p.add_argument("--amount-cents", type=int, required=True, help="amount in cents")
    p.add_argument("--currency", default="EUR", help="ISO 4217 code")
    p.add_argument("--reference", required=True, help="invoice or payment reference")
    p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    operators = groups.add_parser(
        "operators", help="named admin identities with their own tokens (issue, list, revoke)"
    )
    osub = operators.add_subparsers(dest="operators_command", required=True)
    p = _command(
        osub, "create", "issue an operator; prints its admin token once", cmd_operators_create
    )
    p.add_argument("--name", required=True, help="the handle events show, e.g. alice")
    p.add_argument("--email", required=True, help="the operator's address")
    _command(
        osub, "list", "list operators, revoked ones included (never tokens)", cmd_operators_list
    )
    p = _command(osub, "revoke", "revoke an operator's token at once", cmd_operators_revoke)
    p.add_argument("operator_id")
    p.add_argument("--reason", default=None, help="why (recorded in the audit log)")

    p = _command(groups, "events", "print the event log (oldest first)", cmd_events)
    p.add_argument("--after-seq", type=int, default=0, help="start after this seq")
    p.add_argument("--limit", type=int, default=100, help="events per request (1-1000)")
    p.add_argument("--client-id", default=None, help="only this client's events")
    p.add_argument("--type", default=None, help="only this event type, e.g. client.tier_changed")
    p.add_argument("--follow", action="store_true", help="keep printing new events")


def run_admin(args: argparse.Namespace) -> int:
    """Entry point of every ``vectorpanda admin`` command."""
    try:
        token = admin_token(Path(args.data_dir))
        url = args.url or os.environ.get("VP_URL") or DEFAULT_URL
        api = AdminApi(url, token)
        try:
            args.admin_func(api, args)
        finally:
            api.close()
    except UsageError as exc:
        print(f"vectorpanda admin: {exc}", file=sys.stderr)
        return 2
    except AdminFailed as exc:
        print(f"vectorpanda admin: {exc}", file=sys.stderr)
        return 1
    return 0
