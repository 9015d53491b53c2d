"""Which tests ``make test`` runs in its serial pass (scripts/run-pytest.sh)."""

from __future__ import annotations

# Run by `make test` in a serial pass of their own, after the rest has run in parallel
# (scripts/run-pytest.sh): modules whose checks depend on timing that a test running
# beside them would disturb (latency ratios, rate buckets, leases and heartbeats, stall
# and crash windows, backoff counts), and tests/e2e, which shares one fleet per package
# (its secrets canary checks the logs of every e2e test). Crash and recovery tests whose
# only clocks are generous deadlines (30-60 s) run in the parallel pass; the store-crash
# test's 20 s for a reopened HNSW store to be ready missed once beside another test.
SERIAL_MODULES = frozenset(
    {
        "tests/integration/test_concurrent_appends.py",
        "tests/integration/test_coordinator_processes.py",
        "tests/integration/test_cost_isolation.py",
        "tests/integration/test_event_revocation.py",
        "tests/integration/test_failover.py",
        "tests/integration/test_fleet_postgres.py",
        "tests/integration/test_flood.py",
        "tests/integration/test_group_acceptance_postgres.py",
        "tests/integration/test_group_hosts_postgres.py",
        "tests/integration/test_key_refusal_timing.py",
        "tests/integration/test_noisy_import.py",
        "tests/integration/test_noisy_neighbour.py",
        "tests/integration/test_notifier_smtp.py",
        "tests/integration/test_ownership_convergence.py",
        "tests/integration/test_quota_and_rate_limits.py",
        "tests/integration/test_stall_fencing.py",
        "tests/integration/test_update_crash.py",
        "tests/integration/test_worker_store_crash.py",
    }
)
SERIAL_DIRS = ("tests/e2e/",)


def is_serial(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path in SERIAL_MODULES or path.startswith(SERIAL_DIRS)


def serial_paths() -> list[str]:
    """The files and directories of the serial pass, for scripts/run-pytest.sh."""
    return sorted(SERIAL_MODULES) + list(SERIAL_DIRS)


if __name__ == "__main__":
    print("\n".join(serial_paths()))
