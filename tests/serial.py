"""Which tests ``make test`` runs in its serial pass (scripts/run-pytest.sh)."""

from __future__ import annotations

# Run by `make test` in a serial pass of their own, after the rest has run in parallel
# (scripts/run-pytest.sh): modules whose checks depend on timing that a test running
# beside them would disturb (latency ratios, rate buckets, leases and heartbeats, stall
# and crash windows, backoff counts), and tests/e2e, which shares one fleet per package.
SERIAL_MODULES = frozenset(
    {
        "tests/integration/test_concurrent_appends.py",
        "tests/integration/test_coordinator_processes.py",
        "tests/integration/test_cost_isolation.py",
        "tests/integration/test_event_outage.py",
        "tests/integration/test_event_revocation.py",
        "tests/integration/test_failover.py",
        "tests/integration/test_failover_model.py",
        "tests/integration/test_fleet_postgres.py",
        "tests/integration/test_flood.py",
        "tests/integration/test_key_refusal_timing.py",
        "tests/integration/test_noisy_neighbour.py",
        "tests/integration/test_notifier_smtp.py",
        "tests/integration/test_ownership_convergence.py",
        "tests/integration/test_quota_and_rate_limits.py",
        "tests/integration/test_scheduler_postgres.py",
        "tests/integration/test_stall_fencing.py",
        "tests/integration/test_truthful_answers.py",
        "tests/integration/test_update_crash.py",
        "tests/integration/test_worker_store_crash.py",
    }
)
SERIAL_DIRS = ("tests/e2e/",)


def is_serial(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path in SERIAL_MODULES or path.startswith(SERIAL_DIRS)
