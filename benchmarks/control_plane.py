"""Control-plane appends/s: 1 and 3 writer processes on SQLite and on PostgreSQL.

    .venv/bin/python -m benchmarks.control_plane                   # 3,000 events a run
    .venv/bin/python -m benchmarks.control_plane --events 600 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Each writer is a process of its own (as a coordinator would be) with its own
engine, appending one event per transaction (an admin action) to a fresh log:
a temporary SQLite file, or a throwaway PostgreSQL database created on the
server ``--pg-url`` names and dropped afterwards. PostgreSQL runs two ways:
the store's own writes (a transaction-level advisory lock serialises them) and,
for comparison, SERIALIZABLE transactions without the lock, retried on a
serialization failure or a seq collision. Every run ends by verifying the chain.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from eventlog.database import open_control_engine
from eventlog.events import ClientCreated
from eventlog.store import SqliteEventSession, SqliteEventStore

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MODES = ("sqlite", "postgresql", "postgresql-serializable")


def _event(n: int) -> ClientCreated:
    return ClientCreated(client_id=f"c{n:016x}", name=f"C{n}", email=f"c{n}@x.io", tier="free")


def _serializable_append(engine: Engine, n: int, actor: str) -> int:
    """One append without the advisory lock; returns how many retries it took."""
    retries = 0
    while True:
        try:
            with engine.connect() as conn:
                conn.execution_options(isolation_level="SERIALIZABLE")
                with conn.begin():
                    SqliteEventSession(conn).append([_event(n)], actor)
            return retries
        except (OperationalError, IntegrityError):
            retries += 1


def _writer(url: str | None, path: str, mode: str, base: int, count: int, start: Any, out: Any):
    store = SqliteEventStore(open_control_engine(url, Path(path)))
    actor = f"bench-{base}"
    retries = 0
    start.wait()
    began = time.perf_counter()
    for n in range(count):
        if mode == "postgresql-serializable":
            retries += _serializable_append(store.engine, base + n, actor)
        else:
            store.append([_event(base + n)], actor)
    out.put((began, time.perf_counter(), retries))
    store.engine.dispose()


@contextmanager
def throwaway_pg(admin_url: str) -> Iterator[str]:
    admin_url = make_url(admin_url).set(drivername="postgresql+psycopg").render_as_string(False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"vp_bench_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run_one(mode: str, processes: int, events: int, pg_url: str) -> dict[str, Any]:
    """Appends/s of ``processes`` writers sharing ``events`` appends, chain verified."""
    with tempfile.TemporaryDirectory(prefix="vp-bench-cp-") as tmp:
        path = Path(tmp) / "control.sqlite3"
        with throwaway_pg(pg_url) if mode != "sqlite" else _none() as url:
            store = SqliteEventStore(open_control_engine(url, path))  # schema before the race
            ctx = multiprocessing.get_context("spawn")
            start, out = ctx.Barrier(processes), ctx.Queue()
            each = events // processes
            procs = [
                ctx.Process(
                    target=_writer, args=(url, str(path), mode, i * 10**9, each, start, out)
                )
                for i in range(processes)
            ]
            for p in procs:
                p.start()
            spans = [out.get(timeout=600) for _ in procs]
            for p in procs:
                p.join()
            wall = max(s[1] for s in spans) - min(s[0] for s in spans)
            report = store.verify_chain()
            store.engine.dispose()
    total = each * processes
    if not report.ok or report.events != total:
        raise RuntimeError(f"{mode}/{processes}: chain does not verify ({report.events} events)")
    return {
        "mode": mode,
        "processes": processes,
        "events": total,
        "seconds": round(wall, 3),
        "appends_per_s": round(total / wall, 1),
        "retries": sum(s[2] for s in spans),
        "chain_ok": report.ok,
    }


@contextmanager
def _none() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=3000, help="appends per run (split by writers)")
    p.add_argument("--pg-url", default=DEFAULT_PG, help="a maintenance database on the server")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {MODES}")
    args = p.parse_args(argv)
    rows = [
        run_one(mode, processes, args.events, args.pg_url)
        for mode in args.modes.split(",")
        for processes in (1, 3)
    ]
    print("| store | writers | events | s | appends/s | retries |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['processes']} | {r['events']} | {r['seconds']} "
            f"| {r['appends_per_s']} | {r['retries']} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
