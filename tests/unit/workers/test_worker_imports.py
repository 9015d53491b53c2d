"""A worker process does not load the coordinator's web stack (tens of MiB of RSS each)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import vectorpanda.cli
import vectorpanda.server.worker
heavy = ("fastapi", "starlette", "sqlalchemy", "jinja2", "uvicorn", "api.app", "coordinator.hub")
heavy += ("httpx", "vectorpanda_client")  # the admin and client commands load them when run
print(",".join(name for name in heavy if name in sys.modules))
"""


def test_the_worker_entry_point_imports_no_coordinator_libraries() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
