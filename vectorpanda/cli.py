"""The ``vectorpanda`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vectorpanda import __version__, server
from vectorpanda.env_file import InsecureEnvFileError
from vectorpanda.process_setup import (
    MissingSecretError,
    configure_logging,
    configure_worker_logging,
)

# Imported by the commands that use them: `vectorpanda worker` (one per worker process)
# loads neither pydantic's Settings nor the other commands' modules (RSS: issue 11).
if TYPE_CHECKING:
    from vectorpanda.settings import Settings


def _run(coro: object) -> int:
    try:
        import uvloop

        return int(uvloop.run(coro))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is in the lock file
        return int(asyncio.run(coro))  # type: ignore[arg-type]


def cmd_up(args: argparse.Namespace) -> int:
    from vectorpanda.settings import ensure_env_file, env_file_path, load_settings

    data_dir = Path(args.data_dir)
    created = ensure_env_file(env_file_path(data_dir))
    if created:
        print(f"Wrote new secrets to {env_file_path(data_dir).resolve()} (mode 0600)", flush=True)
    overrides: dict[str, object] = {"host": args.host, "port": args.port}
    if "VP_HUB_PORT" not in os.environ:
        overrides["hub_port"] = 0  # any free loopback port; workers are told which
    if "VP_PROJECTIONS_IN_PROCESS" not in os.environ:
        overrides["projections_in_process"] = True  # `up` runs the projector as a task
    settings = load_settings(data_dir, **overrides)
    return _run(server.up(settings, args.workers))


def cmd_coordinator(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(settings, request_log_to_file=False)
    return _run(server.coordinator(settings))


def cmd_coordinator_member(args: argparse.Namespace) -> int:
    """One coordinator process of `vectorpanda up` with VP_COORDINATOR_PROCESSES > 1."""
    from vectorpanda.settings import load_settings

    settings = load_settings(Path(os.environ.get("VP_DATA_DIR", "./vp-data")))
    configure_logging(settings, request_log_to_file=True)
    return _run(server.coordinator_member(settings, args.index, args.workers))


def cmd_worker(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vectorpanda.worker_settings import load_worker_settings

    settings = load_worker_settings(Path(args.data_dir) if args.data_dir else None)
    if args.coordinator:
        settings = replace(settings, coordinator_url=args.coordinator)
    configure_worker_logging()
    return _run(server.worker(settings))


def _serve_until_signal(args: argparse.Namespace, name: str) -> int:
    settings = _settings(args)
    configure_logging(settings, request_log_to_file=False)
    role = server.scheduler if name == "scheduler" else server.notifier
    return _run(role(settings))


def cmd_scheduler(args: argparse.Namespace) -> int:
    return _serve_until_signal(args, "scheduler")


def cmd_notifier(args: argparse.Namespace) -> int:
    if args.action == "run":
        return _serve_until_signal(args, "notifier")
    from notifier.outbox import NotifierOutbox
    from vectorpanda.control_db import shared_store

    settings = _settings(args)
    outbox = NotifierOutbox(shared_store(settings, settings.notifier_db), settings.ops_email)
    try:
        if args.action == "dead":
            for mail in outbox.dead():
                print(f"{mail.event_id}\t{mail.recipient}\t{mail.event_type}\t{mail.reason}")
            return 0
        count = outbox.retry_dead()
    finally:
        outbox.close()
    # a running notifier picks them up at its next delivery round
    print(f"{count} quarantined email(s) put back in line for delivery")
    return 0


def cmd_fleet(args: argparse.Namespace) -> int:
    from vectorpanda.fleet import Fleet, run_fleet

    fleet = Fleet(
        data_dir=Path(args.data_dir),
        workers=args.workers,
        https_port=args.https_port,
        http_port=args.http_port,
        runtime_dir=Path(args.runtime_dir) if args.runtime_dir else None,
        coordinators=args.coordinators,
        database_url=args.database_url,
    )
    return run_fleet(fleet)


def cmd_backup_verify(args: argparse.Namespace) -> int:
    """The restore drill, run locally on the backup store; exit 1 if any backup fails."""
    import json

    from workers.backup_drill import run_drill
    from workers.backup_store import LocalBackupStore

    settings = _settings(args)
    report = run_drill(LocalBackupStore(settings.backups), settings.backups)
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1


def _settings(args: argparse.Namespace) -> Settings:
    from vectorpanda.settings import load_settings

    data_dir = Path(args.data_dir) if args.data_dir else None
    return load_settings(data_dir)


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[Any]]:
    parser = argparse.ArgumentParser(
        prog="vectorpanda",
        description="VectorPanda: a hosted multi-tenant vector database. "
        "Secrets come from the env file or the environment, never from arguments.",
    )
    parser.add_argument("--version", action="version", version=f"vectorpanda {__version__}")
    return parser, parser.add_subparsers(dest="command", required=True)


def _add_worker_command(sub: argparse._SubParsersAction[Any]) -> None:
    worker = sub.add_parser("worker", help="run one FAISS worker that dials the coordinator")
    worker.add_argument("--coordinator", default=None, help="ws://host:port of the worker hub")
    worker.add_argument("--data-dir", default=None)
    worker.set_defaults(func=cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    from vectorpanda.admin_cli import DefaultsInHelp, add_admin_commands
    from vectorpanda.audit_cli import add_audit_commands
    from vectorpanda.client_cli import add_client_commands
    from vectorpanda.migrate_cli import add_migrate_command
    from vectorpanda.records_cli import add_record_commands

    parser, sub = _top_parser()

    up = sub.add_parser(
        "up",
        help="run the whole service on this machine",
        description="Run the coordinator (HTTP API, worker hub, projections, scheduler, "
        "notifier) and the worker processes on this machine. Prints the URL and the "
        "path of the env file holding the admin token.",
        formatter_class=DefaultsInHelp,
    )
    up.add_argument("--host", default="127.0.0.1", help="address the HTTP API listens on")
    up.add_argument("--port", type=int, default=8080, help="port of the HTTP API")
    up.add_argument(
        "--data-dir",
        default=os.environ.get("VP_DATA_DIR", "./vp-data"),
        help="where tenant files, the event log and the env file live ($VP_DATA_DIR)",
    )
    up.add_argument("--workers", type=int, default=2, help="FAISS worker processes to run")
    up.set_defaults(func=cmd_up)
    member = sub.add_parser("coordinator-member")  # started by `up`; not for operators
    # without --index a member claims a free slot (compose's identical services)
    member.add_argument("--index", type=int, default=None)
    member.add_argument("--workers", type=int, default=0, help="workers to wait for")
    member.set_defaults(func=cmd_coordinator_member)

    coord = sub.add_parser("coordinator", help="run the coordinator (API + worker hub)")
    coord.add_argument("--data-dir", default=None)
    coord.set_defaults(func=cmd_coordinator)

    _add_worker_command(sub)

    scheduler = sub.add_parser(
        "scheduler", help="run the scheduler (census, auto-pause, anomalies) via the admin API"
    )
    scheduler.add_argument("--data-dir", default=None)
    scheduler.set_defaults(func=cmd_scheduler)

    notifier = sub.add_parser("notifier", help="run the notifier (events to emails)")
    notifier.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=["run", "dead", "retry-dead"],
        help="run (default); dead: list quarantined emails; retry-dead: send them again",
    )
    notifier.add_argument("--data-dir", default=None)
    notifier.set_defaults(func=cmd_notifier)

    fleet = sub.add_parser(
        "fleet", help="run the docker-compose topology as local processes behind nginx (TLS 1.3)"
    )
    fleet.add_argument("--data-dir", default=os.environ.get("VP_DATA_DIR", "./vp-fleet"))
    fleet.add_argument("--workers", type=int, default=2)
    fleet.add_argument("--https-port", type=int, default=8443, help="0 picks a free port")
    fleet.add_argument("--http-port", type=int, default=8088, help="0 picks a free port")
    fleet.add_argument("--runtime-dir", default=None, help="nginx config/pid/logs (default: temp)")
    fleet.add_argument(
        "--coordinators",
        type=int,
        default=1,
        help="coordinators behind nginx (more than one needs PostgreSQL)",
    )
    fleet.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="the control plane on this PostgreSQL (no password here: VP_DATABASE_URL in the "
        "env file for one); default: VP_DATABASE_URL from the env file, else SQLite",
    )
    fleet.set_defaults(func=cmd_fleet)

    backup = sub.add_parser("backup", help="per-client backups")
    backup_sub = backup.add_subparsers(dest="backup_command", required=True)
    verify = backup_sub.add_parser(
        "verify",
        help="restore drill: restore the newest backup of each client into a scratch "
        "directory and compare checksums and counts (exit 1 on any failure)",
    )
    verify.add_argument("--data-dir", default=os.environ.get("VP_DATA_DIR", "./vp-data"))
    verify.set_defaults(func=cmd_backup_verify)

    add_client_commands(sub)  # import, query
    add_record_commands(sub)  # list, count, update
    add_admin_commands(sub)  # admin clients/keys/tier/pause/resume/billing/events
    add_audit_commands(sub)  # audit replay/verify/export, projections
    add_migrate_command(sub)  # migrate: the control database schema
    return parser


def cli_commands() -> set[str]:
    """The subcommands this build of ``vectorpanda`` has."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


# Every file and directory a VectorPanda process creates (data, WAL, segments,
# event store, audit DB, archives, logs, mail) is private to the service user.
PRIVATE_UMASK = 0o077


def _worker_parser() -> argparse.ArgumentParser:
    """The parser with the worker command alone: a worker process loads no other command."""
    parser, sub = _top_parser()
    _add_worker_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = _worker_parser() if words[:1] == ["worker"] else build_parser()
    args = parser.parse_args(argv)
    os.umask(PRIVATE_UMASK)
    try:
        return int(args.func(args))
    except InsecureEnvFileError as exc:
        print(f"vectorpanda: refusing to start: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except MissingSecretError as exc:
        print(f"vectorpanda: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Looked up, not imported: a worker process never loads the database layer.
        schema = sys.modules.get("eventlog.schema")
        if schema is not None and isinstance(exc, schema.SchemaError):
            print(f"vectorpanda: refusing to start: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
