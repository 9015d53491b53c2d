"""``vectorpanda audit ...`` and ``vectorpanda projections``.

The audit commands read the event store and the audit database directly, so
they work with the broker (and the coordinator) down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vectorpanda.settings import Settings, load_settings
from vectorpanda.shutdown import stop_on_signals

_SEQ_RE = re.compile(r"\d+")


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("VP_DATA_DIR", "./vp-data"),
        help="the data directory (default ./vp-data, as `vectorpanda up`)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.data_dir))


def _event_store(settings: Settings) -> Any:
    from eventlog.sqlite import open_engine
    from eventlog.store import SqliteEventStore

    if not settings.control_db.exists():
        raise SystemExit(f"vectorpanda audit: no event log at {settings.control_db}")
    return SqliteEventStore(open_engine(settings.control_db))


def cmd_replay(args: argparse.Namespace) -> int:
    from projections.audit_store import open_audit_engine, table_digests
    from projections.replay import ReplayTargetExists, replay_into

    store = _event_store(_settings(args))
    target = Path(args.into)
    try:
        seq = replay_into(store, target)
    except ReplayTargetExists as exc:
        print(f"vectorpanda audit replay: {exc}", file=sys.stderr)
        return 2
    engine = open_audit_engine(target)
    digests = table_digests(engine)
    engine.dispose()
    print(json.dumps({"into": str(target), "through_seq": seq, "tables": digests}, indent=2))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from projections.replay import verify_audit

    settings = _settings(args)
    report = verify_audit(_event_store(settings), settings.audit_db)
    out = {
        "ok": report.ok,
        "events": report.events,
        "head_hash": report.head_hash,
        "checkpoint": report.checkpoint,
        "first_bad_seq": report.first_bad_seq,
        "mismatches": [asdict(m) for m in report.mismatches],
    }
    print(json.dumps(out, indent=2))
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from eventlog.export import export_lines

    store = _event_store(_settings(args))
    since: str = args.since
    if _SEQ_RE.fullmatch(since):
        lines = export_lines(store, after_seq=max(int(since) - 1, 0))
    else:
        lines = export_lines(store, since_time=since)
    if args.out in (None, "-"):
        for line in lines:
            sys.stdout.buffer.write(line)
        sys.stdout.flush()
    else:
        with open(args.out, "wb") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
    return 0


def cmd_check_export(args: argparse.Namespace) -> int:
    from eventlog.export import verify_export

    with open(args.file, "rb") as fh:
        report = verify_export(fh)
    out = {
        "ok": report.ok,
        "events": report.events,
        "head_hash": report.head_hash,
        "mismatches": [asdict(m) for m in report.mismatches],
    }
    print(json.dumps(out, indent=2))
    return 0 if report.ok else 1


def cmd_projections(args: argparse.Namespace) -> int:
    from vectorpanda.bootstrap import configure_logging
    from vectorpanda.event_wiring import run_projections

    settings = _settings(args)
    configure_logging(settings, request_log_to_file=False)

    async def main() -> int:
        stop = stop_on_signals()
        print(f"projections: writing {settings.audit_db}", flush=True)
        await run_projections(settings, stop)
        return 0

    return int(asyncio.run(main()))


def add_audit_commands(sub: Any) -> None:
    """Register ``audit`` (replay, verify, export, check-export) and ``projections``."""
    audit = sub.add_parser("audit", help="replay, verify and export the event log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    replay = audit_sub.add_parser("replay", help="rebuild the audit tables into a fresh database")
    replay.add_argument("--into", required=True, help="path of the new SQLite database")
    _data_dir_arg(replay)
    replay.set_defaults(func=cmd_replay)

    verify = audit_sub.add_parser(
        "verify", help="check the hash chain and the live audit tables against a replay"
    )
    _data_dir_arg(verify)
    verify.set_defaults(func=cmd_verify)

    export = audit_sub.add_parser("export", help="write a self-verifying export of the log")
    export.add_argument(
        "--since", default="1", help="first seq (a number) or an ISO-8601 UTC time (default 1)"
    )
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument("--out", default=None, help="file to write (default stdout)")
    _data_dir_arg(export)
    export.set_defaults(func=cmd_export)

    check = audit_sub.add_parser("check-export", help="verify the hashes of an export file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_export)

    projections = sub.add_parser(
        "projections", help="run the projections service (audit tables) until stopped"
    )
    _data_dir_arg(projections)
    projections.set_defaults(func=cmd_projections)
