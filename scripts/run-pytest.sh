#!/usr/bin/env bash
# Runs the whole suite; pytest's "no tests collected" (exit 5) counts as a failure.
#
# With no arguments (`make test`): two passes. First everything not marked `serial`, in
# PYTEST_WORKERS processes (pytest-xdist, default 2; each test file stays in one
# process, so a module's shared stack starts once); then the `serial` tests (timing-
# sensitive modules and tests/e2e, listed in tests/serial.py) one at a time, with
# nothing else running beside them. Both passes always run; either failing fails.
# With arguments: one plain pytest run with those arguments.
set -uo pipefail
cd "$(dirname "$0")/.."

run() {
    .venv/bin/python -m pytest "$@"
    local rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests" >&2
        return 1
    fi
    return "$rc"
}

if [ "$#" -gt 0 ]; then
    run "$@"
    exit $?
fi

run -n "${PYTEST_WORKERS:-2}" --dist loadfile -m "not serial"
parallel_rc=$?
# Only the serial files are collected (the marker says the same; it keeps a stray one out).
mapfile -t serial_paths < <(.venv/bin/python -m tests.serial)
run -p no:xdist -m serial "${serial_paths[@]}"
serial_rc=$?
if [ "$parallel_rc" -ne 0 ] || [ "$serial_rc" -ne 0 ]; then
    echo "pytest failed: parallel pass exit $parallel_rc, serial pass exit $serial_rc" >&2
    exit 1
fi
