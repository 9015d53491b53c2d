"""The compose liveness check: a fresh file means alive; a stale one gets the worker killed."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from workers.main import LEASE_INTERVALS, touch_liveness

ROOT = Path(__file__).resolve().parents[3]


def _healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_worker_keeps_its_liveness_file_fresh(tmp_path: Path) -> None:
    path = tmp_path / "alive"

    async def run() -> None:
        task = asyncio.create_task(touch_liveness(path, 0.05))
        await asyncio.sleep(0.02)
        os.utime(path, (time.time() - 60, time.time() - 60))
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(run())
    assert path.read_text() == str(os.getpid())
    assert time.time() - path.stat().st_mtime < 5


def test_a_stale_liveness_file_gets_the_frozen_process_killed(tmp_path: Path) -> None:
    check = _healthcheck()
    frozen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(frozen.pid, signal.SIGSTOP)
        path = tmp_path / "alive"
        path.write_text(str(frozen.pid))
        assert check.main(["alive", str(path), "2"]) == 0
        assert frozen.poll() is None
        os.utime(path, (time.time() - 3, time.time() - 3))
        assert check.main(["alive", str(path), "2"]) == 1
        assert frozen.wait(5) == -signal.SIGKILL
    finally:
        if frozen.poll() is None:
            frozen.kill()
            frozen.wait()
    # no file yet (still starting): unhealthy, and nobody is killed
    assert check.main(["alive", str(tmp_path / "missing"), "2"]) == 1


def test_compose_fences_a_worker_before_its_lease_runs_out() -> None:
    worker = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
    assert worker["init"] is True  # the worker is not PID 1, so it can be killed from inside
    test = worker["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "/app/deploy/healthcheck.py"] and test[3] == "alive"
    assert test[4] == worker["environment"]["VP_WORKER_LIVENESS_FILE"]
    lease_s = LEASE_INTERVALS * 1.0  # default heartbeat interval
    assert float(test[5]) < lease_s
    assert float(worker["healthcheck"]["timeout"].rstrip("s")) < lease_s
