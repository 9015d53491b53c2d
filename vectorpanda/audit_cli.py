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
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vectorpanda.audit_progress import audit_progress, print_verdict
from vectorpanda.receipt_cli import add_receipt_command
from vectorpanda.settings import Settings, load_settings

_SEQ_RE = re.compile(r"\d+")
CHAIN_APART_OVER = 100_000


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("VP_DATA_DIR", "./vp-data"),
        help="the data directory (default ./vp-data, as `vectorpanda up`)",
    )


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(Path(args.data_dir))


def _event_store(settings: Settings) -> Any:
    from vectorpanda.control_db import audit_event_log

    return audit_event_log(settings)


def cmd_replay(args: argparse.Namespace) -> int:
    from projections.replay import ReplayTargetExists, replay_with_digests

    store = _event_store(_settings(args))
    target = Path(args.into)
    try:
        with audit_progress("replay", enabled=_show_progress(args)) as progress:
            # A long log's tables are digested on a second core while they are written.
            seq, digests = replay_with_digests(
                store, target, progress=progress, apart_over=CHAIN_APART_OVER
            )
    except ReplayTargetExists as exc:
        print(f"vectorpanda audit replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"into": str(target), "through_seq": seq, "tables": digests}, indent=2))
    return 0


def _show_progress(args: argparse.Namespace) -> bool:
    return sys.stdout.isatty() and not getattr(args, "json", False)


def _anchor_key(settings: Settings, args: argparse.Namespace) -> Any:
    from eventlog.anchors import public_key_from_hex, signing_key

    if args.anchor_public_key:
        try:
            return public_key_from_hex(args.anchor_public_key)
        except ValueError as exc:
            raise SystemExit(f"vectorpanda audit verify: bad --anchor-public-key: {exc}") from exc
    if settings.anchor_signing_key is None:
        return None
    return signing_key(settings.anchor_signing_key.get_secret_value()).public_key()


def cmd_verify(args: argparse.Namespace) -> int:
    from projections.audit_checkpoint import NoAuditCheckpoint
    from projections.audit_verify import run_verify
    from vectorpanda.control_db import audit_database

    settings = _settings(args)
    store = _event_store(settings)
    anchors_dir = Path(args.anchors) if args.anchors else settings.anchors_dir
    if args.anchors and not anchors_dir.is_dir():
        print(f"vectorpanda audit verify: no anchors directory {anchors_dir}", file=sys.stderr)
        return 2
    key = _anchor_key(settings, args) if anchors_dir.is_dir() else None
    if args.anchors and key is None:
        print(
            "vectorpanda audit verify: no key to check anchors with "
            "(VP_ANCHOR_SIGNING_KEY or --anchor-public-key)",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    try:
        with audit_progress("verify", enabled=_show_progress(args)) as progress:
            verdict = run_verify(
                store,
                audit_database(settings),
                since_checkpoint=args.since_checkpoint,
                anchors_dir=anchors_dir if key is not None else None,
                anchor_key=key,
                progress=progress,
                # A long log is checked on two cores: links in one process, tables in this.
                chain_apart_over=CHAIN_APART_OVER,
            )
    except NoAuditCheckpoint as exc:
        print(f"vectorpanda audit verify: {exc}", file=sys.stderr)
        return 2
    out = verdict.summary()
    out["seconds"] = round(time.perf_counter() - started, 3)
    if verdict.ok and args.record_checkpoint:
        out["recorded_checkpoint"] = _record(store, settings, verdict)
    if _show_progress(args):
        print_verdict(out)
    else:
        print(json.dumps(out, indent=2))
    return 0 if verdict.ok else 1


def _record(store: Any, settings: Settings, verdict: Any) -> dict[str, Any] | None:
    """Record the checkpoint event and anchor the head that now includes it."""
    from eventlog.anchors import sign_head, signing_key, write_anchor
    from eventlog.records import utc_now
    from projections.audit_checkpoint import record_checkpoint
    from vectorpanda import __version__

    stored = record_checkpoint(store, verdict.report, __version__)
    if stored is None:
        return None
    out: dict[str, Any] = {"seq": stored.seq, "verified_seq": verdict.report.verified_seq}
    if settings.anchor_signing_key is not None:
        key = signing_key(settings.anchor_signing_key.get_secret_value())
        anchor = sign_head(key, stored.seq, stored.hash, utc_now(), "audit-checkpoint")
        out["anchor"] = str(write_anchor(settings.anchors_dir, anchor))
    return out


def cmd_anchor(args: argparse.Namespace) -> int:
    from eventlog.anchors import sign_head, signing_key, write_anchor
    from eventlog.records import utc_now

    settings = _settings(args)
    if settings.anchor_signing_key is None:
        print("vectorpanda audit anchor: VP_ANCHOR_SIGNING_KEY is not set", file=sys.stderr)
        return 2
    head = _event_store(settings).head()
    key = signing_key(settings.anchor_signing_key.get_secret_value())
    anchor = sign_head(key, head.seq, head.hash, utc_now(), "manual")
    path = write_anchor(Path(args.out) if args.out else settings.anchors_dir, anchor)
    print(json.dumps({**anchor, "file": str(path)}, indent=2))
    return 0


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
    from vectorpanda import server
    from vectorpanda.control_db import audit_location
    from vectorpanda.process_setup import configure_logging

    settings = _settings(args)
    configure_logging(settings, request_log_to_file=False)
    print(f"projections: writing {audit_location(settings)}", flush=True)
    return int(asyncio.run(server.projections(settings)))


def add_audit_commands(sub: Any) -> None:
    """Register ``audit`` (replay, verify, export, state, changes, ...) and ``projections``."""
    audit = sub.add_parser("audit", help="replay, verify and export the event log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)

    replay = audit_sub.add_parser("replay", help="rebuild the audit tables into a fresh database")
    replay.add_argument("--into", required=True, help="path of the new SQLite database")
    _data_dir_arg(replay)
    replay.set_defaults(func=cmd_replay)

    verify = audit_sub.add_parser(
        "verify", help="check the hash chain and the live audit tables against a replay"
    )
    verify.add_argument(
        "--since-checkpoint",
        action="store_true",
        help="check only what came after the newest recorded audit checkpoint",
    )
    verify.add_argument(
        "--record-checkpoint",
        action="store_true",
        help="when the log is sound, record how far it was verified (an event) and anchor it",
    )
    verify.add_argument(
        "--anchors",
        default=None,
        help="directory of signed anchors the log must still reach (default <data>/anchors)",
    )
    verify.add_argument(
        "--anchor-public-key", default=None, help="hex Ed25519 key to check anchors with"
    )
    verify.add_argument("--json", action="store_true", help="JSON summary, no progress bar")
    _data_dir_arg(verify)
    verify.set_defaults(func=cmd_verify)

    anchor = audit_sub.add_parser("anchor", help="sign the log's current head into an anchor file")
    anchor.add_argument("--out", default=None, help="directory (default <data>/anchors)")
    _data_dir_arg(anchor)
    anchor.set_defaults(func=cmd_anchor)

    export = audit_sub.add_parser("export", help="write a self-verifying export of the log")
    export.add_argument(
        "--since", default="1", help="first seq (a number) or an ISO-8601 UTC time (default 1)"
    )
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument("--out", default=None, help="file to write (default stdout)")
    _data_dir_arg(export)
    export.set_defaults(func=cmd_export)

    from vectorpanda.history_cli import add_history_commands

    add_history_commands(audit_sub, _data_dir_arg)

    check = audit_sub.add_parser("check-export", help="verify the hashes of an export file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_export)

    add_receipt_command(audit_sub, _data_dir_arg)

    projections = sub.add_parser(
        "projections", help="run the projections service (audit tables) until stopped"
    )
    _data_dir_arg(projections)
    projections.set_defaults(func=cmd_projections)
