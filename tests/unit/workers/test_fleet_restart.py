"""``vectorpanda fleet`` replaces a worker that exited (a fenced one) instead of stopping."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from vectorpanda.fleet import Child, Fleet, free_port
from vectorpanda.settings import ensure_env_file, env_file_path


def test_a_dead_worker_is_replaced_and_anything_else_is_not(tmp_path: Path) -> None:
    ensure_env_file(env_file_path(tmp_path))
    fleet = Fleet(tmp_path, say=io.StringIO())
    fleet.api_port, fleet.hub_port = free_port(), free_port()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    coordinator = Child("coordinator", gone, tmp_path / "c.log")
    worker = Child("worker-w2", gone, tmp_path / "w.log")
    fleet.children.extend([coordinator, worker])
    try:
        assert fleet.restart_worker(coordinator) is False
        assert fleet.restart_worker(worker) is True
        names = [c.name for c in fleet.children]
        assert names == ["coordinator", "worker-w2"]
        fresh = fleet.children[1]
        assert fresh is not worker and fresh.popen.poll() is None
        assert "worker-w2 exited with 0" in fleet.say.getvalue()  # type: ignore[attr-defined]
    finally:
        for child in fleet.children:
            if child.popen.poll() is None:
                child.popen.kill()
                child.popen.wait()
