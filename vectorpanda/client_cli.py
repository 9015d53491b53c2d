"""The client-side commands: ``vectorpanda import`` and ``vectorpanda query``.

The API key comes from ``VP_API_KEY`` only: an argument would leak into shell
history and process lists. The URL comes from ``--url`` or ``VP_URL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
NO_KEY = (
    "VP_API_KEY is not set. Export your API key first, e.g. `export VP_API_KEY=vp_...`; "
    "keys are only read from the environment, never from command-line arguments."
)


class UsageError(Exception):
    """A problem with how the command was called; exits with status 2."""


def api_key_from_env() -> str:
    key = os.environ.get("VP_API_KEY", "").strip()
    if not key:
        raise UsageError(NO_KEY)
    return key


def add_client_commands(sub: Any) -> None:
    """Register ``import`` and ``query`` on the ``vectorpanda`` parser."""
    url_help = f"service URL (default: $VP_URL or {DEFAULT_URL})"

    imp = sub.add_parser(
        "import",
        help="bulk-import vectors from .npy, .jsonl or .parquet (key from VP_API_KEY)",
        description="Import vectors into a collection. The API key is read from VP_API_KEY. "
        ".npy: a rows x dimension float array (ids from --ids, else row numbers); "
        '.jsonl: one {"id", "values", "metadata"?} per line; '
        ".parquet: columns id, values, metadata? (JSON string or struct).",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--collection", required=True)
    imp.add_argument("--url", default=None, help=url_help)
    imp.add_argument("--batch-size", type=int, default=1000, help="vectors per request (max 1000)")
    imp.add_argument("--ids", type=Path, default=None, help="for .npy: text file, one id per line")
    start = imp.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    start.add_argument("--start-row", type=int, default=0, help="skip the rows before this one")
    imp.add_argument("--checkpoint", type=Path, default=None, help="default: <FILE>.vp-import.json")
    imp.add_argument(
        "--create",
        choices=["cosine", "l2", "ip"],
        default=None,
        metavar="METRIC",
        help="create the collection (flat, with this metric) if it does not exist",
    )
    imp.set_defaults(func=cmd_import)

    query = sub.add_parser(
        "query",
        help="nearest neighbours of a vector or of a stored id (key from VP_API_KEY)",
    )
    query.add_argument("--collection", required=True)
    what = query.add_mutually_exclusive_group(required=True)
    what.add_argument("--vector", help="JSON list of floats, e.g. '[0.1, 0.2, 0.3]'")
    what.add_argument("--id", help="query with the stored vector of this id")
    query.add_argument("--top-k", type=int, default=10)
    query.add_argument("--filter", default=None, help="JSON metadata filter")
    query.add_argument("--metadata", action="store_true", help="show each match's metadata")
    query.add_argument("--json", action="store_true", help="print the matches as JSON")
    query.add_argument("--url", default=None, help=url_help)
    query.set_defaults(func=cmd_query)


def _url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("VP_URL") or DEFAULT_URL)


def run_client_command(func: Any, args: argparse.Namespace) -> int:
    """Run a client command, turning expected failures into one clear line."""
    from vectorpanda.import_sources import SourceError
    from vectorpanda_client import VectorPandaError

    try:
        return int(func(args))
    except UsageError as exc:
        print(f"vectorpanda {args.command}: {exc}", file=sys.stderr)
        return 2
    except (SourceError, VectorPandaError) as exc:
        print(f"vectorpanda {args.command}: {exc}", file=sys.stderr)
        return 1


def cmd_import(args: argparse.Namespace) -> int:
    return run_client_command(_import, args)


def cmd_query(args: argparse.Namespace) -> int:
    return run_client_command(_query, args)


def _import(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vectorpanda.bulk_import import (
        Checkpoint,
        checkpoint_path_for,
        print_summary,
        run_import,
    )
    from vectorpanda.import_sources import open_source
    from vectorpanda_client import Client, NotFoundError

    key = api_key_from_env()
    if not 1 <= args.batch_size <= 1000:
        raise UsageError("--batch-size must be between 1 and 1000 (the server's per-request max)")
    source = open_source(args.file, args.ids)
    cp_path = args.checkpoint or checkpoint_path_for(args.file)
    if args.resume:
        if not cp_path.exists():
            raise UsageError(f"nothing to resume: no checkpoint at {cp_path}")
        checkpoint = Checkpoint.load(cp_path)
        why_not = checkpoint.matches(args.file, args.collection)
        if why_not:
            raise UsageError(f"cannot resume from {cp_path}: {why_not}")
    else:
        if not 0 <= args.start_row <= source.rows:
            raise UsageError(f"--start-row must be between 0 and {source.rows}")
        checkpoint = Checkpoint.fresh(args.file, args.collection, source.rows, args.start_row)
    progress_console = Console(file=sys.stderr)
    out = Console(file=sys.stdout, soft_wrap=True)
    with Client(_url(args), key) as client:
        try:
            info = client.collection(args.collection).describe()
        except NotFoundError:
            if args.create is None or source.dimension is None:
                raise UsageError(
                    f"collection '{args.collection}' does not exist: create it first, "
                    "or pass --create METRIC"
                ) from None
            info = client.create_collection(args.collection, source.dimension, args.create)
        if source.dimension is None:
            source.dimension = info.dimension  # jsonl/parquet rows are checked against it
        elif source.dimension != info.dimension:
            raise UsageError(
                f"{args.file} holds {source.dimension}-dimensional vectors but collection "
                f"'{args.collection}' has dimension {info.dimension}"
            )
        started = time.perf_counter()
        checkpoint = run_import(
            client, source, checkpoint, cp_path, args.batch_size, progress_console
        )
    print_summary(out, checkpoint, cp_path, time.perf_counter() - started)
    return 0 if checkpoint.finished and not checkpoint.failed else 1


def _query(args: argparse.Namespace) -> int:
    import orjson
    from rich.console import Console
    from rich.table import Table

    from vectorpanda_client import Client, QueryResult

    key = api_key_from_env()
    try:
        filter = orjson.loads(args.filter) if args.filter else None
        vector = orjson.loads(args.vector) if args.vector else None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--vector and --filter take JSON: {exc}") from None
    if vector is not None and not (isinstance(vector, list) and vector):
        raise UsageError("--vector takes a JSON list of numbers, e.g. '[0.1, 0.2]'")
    with Client(_url(args), key) as client:
        collection = client.collection(args.collection)
        if vector is None:
            found = collection.fetch([args.id])
            if args.id not in found:
                raise UsageError(f"no vector with id '{args.id}' in '{args.collection}'")
            vector = found[args.id].values
        result = collection.query(
            vector, top_k=args.top_k, filter=filter, include_metadata=args.metadata
        )
    assert isinstance(result, QueryResult)
    if args.json:
        rows = [
            {"id": m.id, "score": m.score, **({"metadata": m.metadata} if args.metadata else {})}
            for m in result
        ]
        sys.stdout.write(orjson.dumps({"matches": rows}).decode() + "\n")
        return 0
    table = Table("#", "id", "score", *(["metadata"] if args.metadata else []))
    for rank, m in enumerate(result, 1):
        extra = [orjson.dumps(m.metadata or {}).decode()] if args.metadata else []
        table.add_row(str(rank), m.id, f"{m.score:.6f}", *extra)
    Console().print(table)
    return 0
