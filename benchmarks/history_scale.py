"""``audit state`` latency on a large generated log (issue 17).

    .venv/bin/python -m benchmarks.history_scale                  # 1,000,000 events
    .venv/bin/python -m benchmarks.history_scale --events 100000

The log is built through the store (tests/event_log_fixture.py). Timed: the
start-up migration that adds the client/time index to a log made without it;
``vectorpanda audit state`` as an operator runs it (a child process, so
interpreter start-up included); and the fold alone in process (the admin API's
cost) for random clients and moments, the busiest client included.
``benchmarks.audit_scale`` calls ``time_history`` on its own log for ``make bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coordinator.accounts.model import ClientNotFound
from coordinator.history.service import changes_between, state_as_of
from eventlog.sqlite import open_engine, write_transaction
from eventlog.store import SqliteEventStore
from tests.event_log_fixture import build_log_at


def _clients_and_span(store: SqliteEventStore) -> tuple[list[str], str, datetime, datetime]:
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT DISTINCT client_id FROM events")]
        busiest = conn.exec_driver_sql(
            "SELECT client_id FROM events WHERE client_id IS NOT NULL "
            "GROUP BY client_id ORDER BY COUNT(*) DESC LIMIT 1"
        ).scalar_one()
        first, last = conn.exec_driver_sql(
            "SELECT MIN(occurred_at), MAX(occurred_at) FROM events"
        ).one()
    parse = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)  # noqa: E731
    return [i for i in ids if i], busiest, parse(first), parse(last)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def time_history(data: Path, store: SqliteEventStore, samples: int = 300) -> dict[str, Any]:
    """Latency of the history fold in process and of ``vectorpanda audit state``."""
    from benchmarks.audit_scale import timed_cli

    ids, busiest, first, last = _clients_and_span(store)
    rng = random.Random(17)
    span = (last - first).total_seconds()
    fold: list[float] = []
    for _ in range(samples):
        cid = rng.choice(ids)
        at = first + timedelta(seconds=rng.uniform(0, span))
        started = time.perf_counter()
        with contextlib.suppress(ClientNotFound):  # before it existed: still a full read
            state_as_of(store, cid, at)
        fold.append(time.perf_counter() - started)
    heavy: list[float] = []
    for _ in range(20):
        started = time.perf_counter()
        state = state_as_of(store, busiest, last)
        heavy.append(time.perf_counter() - started)
    started = time.perf_counter()
    changes = changes_between(store, busiest)
    changes_s = time.perf_counter() - started
    at = last.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cli = [timed_cli(data, "state", "--client", rng.choice(ids), "--at", at, "--json")]
    cli.append(timed_cli(data, "state", "--client", busiest, "--at", at, "--json"))
    return {
        "clients": len(ids),
        "fold_random": _ms(fold) | {"samples": samples},
        "fold_busiest": _ms(heavy)
        | {"client": busiest, "keys": len(state.keys), "event_seq": state.event_seq},
        "changes_busiest_ms": round(changes_s * 1000, 1),
        "changes_busiest_rows": len(changes),
        "cli_audit_state_seconds": [c["seconds"] for c in cli],
        "cli_audit_state_cpu_seconds": [c["cpu_seconds"] for c in cli],
    }


def time_index_migration(path: Path) -> float:
    """Seconds the start-up migration takes to index a log made before the index existed."""
    engine = open_engine(path)
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_events_client_time")
    engine.dispose()
    started = time.perf_counter()
    store = SqliteEventStore(open_engine(path))
    seconds = time.perf_counter() - started
    store.engine.dispose()
    return round(seconds, 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--dir", default=None, help="where to build the log (default: RAM)")
    args = parser.parse_args(argv)
    # In RAM where there is some: building a million events is set-up, not what is measured.
    ram = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="vp-bench-history-", dir=args.dir or ram) as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        started = time.perf_counter()
        store = build_log_at(data / "control.sqlite3", args.events)
        built = time.perf_counter() - started
        print(f"history: built {args.events:,} events in {built:.1f}s", flush=True)
        store.engine.dispose()
        migration = time_index_migration(data / "control.sqlite3")
        print(f"history: index migration {migration}s", flush=True)
        store = SqliteEventStore(open_engine(data / "control.sqlite3"))
        results = {"events": args.events, "build_seconds": round(built, 1)}
        results |= {"index_migration_seconds": migration}
        results |= time_history(data, store, args.samples)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
