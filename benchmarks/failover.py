"""Failover figures: time from a worker SIGKILL to the first successful query.

Starts a fleet (coordinator + 2 workers as processes), keeps a writer running
per tenant, and kills the owner of a tenant ``--runs`` times, restarting it
after each run. Reports median and worst recovery time, requests that failed
during failover, and acknowledged writes lost (must be 0).

    .venv/bin/python -m benchmarks.failover [--runs 20]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.fleet import Fleet
from tests.integration.test_failover import DIM, Writer, fetch_all


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(Path(tmp), workers=2).start()
        try:
            cid, key = fleet.new_client("failover")
            with fleet.client(key) as c:
                c.post("/v1/collections", json={"name": "c", "dimension": DIM})
            writer = Writer(fleet, key, "w", 1)
            writer.start()
            recoveries = []
            with fleet.client(key, timeout=10) as c:
                for _ in range(args.runs):
                    time.sleep(0.5)
                    owner = fleet.owner_of(cid)
                    while owner is None:
                        c.post("/v1/collections/c/query", json={"vector": [0.1] * DIM})
                        owner = fleet.owner_of(cid)
                    fleet.worker_procs[owner].signal(signal.SIGKILL)
                    killed = time.monotonic()
                    while True:
                        r = c.post("/v1/collections/c/query", json={"vector": [0.1] * DIM})
                        if r.status_code == 200:
                            recoveries.append(time.monotonic() - killed)
                            break
                        time.sleep(0.005)
                    fleet.worker_procs[owner].popen.wait()
                    fleet.start_worker(owner)
                    fleet.wait_live(2)
            writer.stop_flag.set()
            writer.join(30)
            with fleet.client(key) as c:
                got = fetch_all(c, list(writer.acked))
            lost = sum(
                1
                for vid, v in writer.acked.items()
                if vid not in got or not np.array_equal(got[vid], v)
            )
            failed = sum(1 for s in writer.statuses if s != 200)
        finally:
            fleet.stop()
    print(f"runs: {len(recoveries)}")
    print(
        f"kill -> first successful query: median {statistics.median(recoveries) * 1000:.0f} ms, "
        f"worst {max(recoveries) * 1000:.0f} ms"
    )
    print(
        f"writer requests: {len(writer.statuses)}, failed during failover: {failed} "
        f"(statuses: {sorted(set(writer.statuses))})"
    )
    print(f"acknowledged writes: {len(writer.acked)}, lost: {lost}")


if __name__ == "__main__":
    main()
