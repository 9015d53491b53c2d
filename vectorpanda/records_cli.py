"""The client-side commands ``vectorpanda list``, ``count`` and ``update``.

Like ``import`` and ``query``: the key comes from ``VP_API_KEY`` only, the URL from
``--url`` or ``VP_URL``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vectorpanda.client_cli import DEFAULT_URL, UsageError, api_key_from_env, run_client_command


def add_record_commands(sub: Any) -> None:
    """Register ``list``, ``count`` and ``update`` on the ``vectorpanda`` parser."""
    url_help = f"service URL (default: $VP_URL or {DEFAULT_URL})"
    filter_help = 'JSON metadata filter, e.g. \'{"genre": "jazz"}\''

    lister = sub.add_parser(
        "list",
        help="list a collection's vector ids in ascending order (key from VP_API_KEY)",
        description="Walk a collection's ids in ascending UTF-8 byte order, following "
        "cursors page by page. Prints one id per line, or JSON lines with --json.",
    )
    lister.add_argument("--collection", required=True)
    lister.add_argument("--filter", default=None, help=filter_help)
    lister.add_argument("--metadata", action="store_true", help="show each vector's metadata")
    lister.add_argument("--values", action="store_true", help="include values (with --json)")
    lister.add_argument("--max", type=int, default=None, help="stop after this many vectors")
    lister.add_argument("--page-size", type=int, default=100, help="ids per request (1-1000)")
    lister.add_argument("--json", action="store_true", help="one JSON object per line")
    lister.add_argument("--url", default=None, help=url_help)
    lister.set_defaults(func=lambda args: run_client_command(_list, args))

    counter = sub.add_parser(
        "count", help="count a collection's vectors, exactly (key from VP_API_KEY)"
    )
    counter.add_argument("--collection", required=True)
    counter.add_argument("--filter", default=None, help=filter_help)
    counter.add_argument("--url", default=None, help=url_help)
    counter.set_defaults(func=lambda args: run_client_command(_count, args))

    updater = sub.add_parser(
        "update",
        help="change metadata by ids or filter, without re-sending vectors (key from VP_API_KEY)",
        description="Merge the fields of --set into, and remove the --unset fields from, the "
        "metadata of the given ids or of every vector matching --filter ('{}' for all).",
    )
    updater.add_argument("--collection", required=True)
    which = updater.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", help="comma-separated ids")
    which.add_argument("--filter", help=filter_help)
    updater.add_argument("--set", default=None, help="JSON object of fields, e.g. '{\"k\": 1}'")
    updater.add_argument("--unset", default=None, help="comma-separated field names to remove")
    updater.add_argument("--url", default=None, help=url_help)
    updater.set_defaults(func=lambda args: run_client_command(_update, args))


def _url(args: argparse.Namespace) -> str:
    import os

    return str(args.url or os.environ.get("VP_URL") or DEFAULT_URL)


def _json_arg(text: str | None, option: str) -> Any:
    import orjson

    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{option} takes a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f'{option} takes a JSON object, e.g. \'{{"genre": "jazz"}}\'')
    return value


def _list(args: argparse.Namespace) -> int:
    import orjson

    from vectorpanda_client import Client

    key = api_key_from_env()
    if not 1 <= args.page_size <= 1000:
        raise UsageError("--page-size must be between 1 and 1000")
    if args.max is not None and args.max < 0:
        raise UsageError("--max must not be negative")
    filter = _json_arg(args.filter, "--filter")
    shown = 0
    with Client(_url(args), key) as client:
        vectors = client.collection(args.collection).list(
            filter=filter,
            include_metadata=args.metadata,
            include_values=args.values and args.json,
            page_size=min(args.page_size, args.max or args.page_size),
        )
        for vector in vectors:
            if args.max is not None and shown >= args.max:
                break
            if args.json:
                row: dict[str, Any] = {"id": vector.id}
                if vector.metadata is not None:
                    row["metadata"] = vector.metadata
                if vector.values is not None:
                    row["values"] = vector.values
                line = orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY).decode()
            elif args.metadata:
                line = f"{vector.id}\t{orjson.dumps(vector.metadata or {}).decode()}"
            else:
                line = vector.id
            sys.stdout.write(line + "\n")
            shown += 1
    return 0


def _count(args: argparse.Namespace) -> int:
    from vectorpanda_client import Client

    key = api_key_from_env()
    filter = _json_arg(args.filter, "--filter")
    with Client(_url(args), key) as client:
        print(client.collection(args.collection).count(filter))
    return 0


def _update(args: argparse.Namespace) -> int:
    from vectorpanda_client import Client

    key = api_key_from_env()
    fields = _json_arg(args.set, "--set")
    unset = [f.strip() for f in args.unset.split(",") if f.strip()] if args.unset else None
    if not fields and not unset:
        raise UsageError("pass --set and/or --unset with at least one field")
    ids = [i for i in args.ids.split(",") if i] if args.ids is not None else None
    filter = _json_arg(args.filter, "--filter")
    with Client(_url(args), key) as client:
        updated = client.collection(args.collection).update(
            ids, filter=filter, set=fields, unset=unset
        )
    print(f"updated {updated} vectors")
    return 0
