"""``vectorpanda up``: the whole service on one machine.

The coordinator runs in this process; N worker processes are spawned, dial in
over loopback WebSocket, and are restarted if they die. SIGINT/SIGTERM stop
everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from coordinator.hub import WorkerLink
from vectorpanda.process_setup import configure_logging
from vectorpanda.server.coordinator import build_coordinator, serve_coordinator
from vectorpanda.server.duties import in_process_duties
from vectorpanda.settings import Settings, env_file_path
from vectorpanda.shutdown import stop_children, stop_on_signals

log = logging.getLogger("vectorpanda.up")

WORKER_STOP_GRACE_S = 10.0
READY_WAIT_S = 60.0
# A SIGKILLed process is gone at once, even a stopped one; this only bounds a
# process stuck in uninterruptible I/O (D state), which the kernel kills on return.
FENCE_WAIT_S = 5.0
# A worker that keeps exiting is restarted after a pause that doubles from this, up to
# VP_WORKER_RESTART_BACKOFF_MAX_S; one that ran this long starts over from it.
RESTART_BACKOFF_FIRST_S = 0.5
RESTART_BACKOFF_RESET_S = 30.0


class WorkerSupervisor:
    """Starts worker processes and restarts any that exit unexpectedly."""

    def __init__(self, count: int, settings: Settings) -> None:
        self._count = count
        self._settings = settings
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._fenced: set[int] = set()

    @property
    def pids(self) -> dict[str, int]:
        return {wid: p.pid for wid, p in self._procs.items()}

    def start(self, hub_url: str) -> None:
        for i in range(1, self._count + 1):
            self._tasks.append(asyncio.create_task(self._keep_running(f"w{i}", hub_url)))

    def _worker_env(self, worker_id: str, hub_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "VP_DATA_DIR": str(self._settings.data_dir.resolve()),
                "VP_HOT_DIR": str(self._settings.hot.resolve()),
                "VP_COORDINATOR_URL": hub_url,
                "VP_WORKER_ID": worker_id,
                # one BLAS/FAISS thread per worker process: scale with processes
                "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                # graph building widens to every core when idle; idle OpenMP
                # threads sleep instead of spinning on the cores queries need
                "OMP_WAIT_POLICY": "PASSIVE",
            }
        )
        return env

    async def _keep_running(self, worker_id: str, hub_url: str) -> None:
        cap = self._settings.worker_restart_backoff_max_s
        first = min(RESTART_BACKOFF_FIRST_S, cap)
        backoff = first
        while not self._stopping:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vectorpanda",
                "worker",
                env=self._worker_env(worker_id, hub_url),
            )
            self._procs[worker_id] = proc
            code = await proc.wait()
            if self._stopping:
                return
            if proc.pid in self._fenced:
                # A fenced worker was healthy until it froze: replace it at once.
                self._fenced.discard(proc.pid)
                log.warning("worker %s was fenced; starting a new one", worker_id)
                continue
            ran_s = time.monotonic() - started
            backoff = first if ran_s > RESTART_BACKOFF_RESET_S else min(backoff * 2, cap)
            log.warning("worker %s exited with %s; restarting in %.1fs", worker_id, code, backoff)
            await asyncio.sleep(backoff)

    async def fence(self, link: WorkerLink) -> bool:
        """SIGKILL our worker process that the hub declared down, and wait until it is gone.

        Only a process this supervisor started under that worker id, with the pid
        the worker announced, is killed; anything else is left alone (False).
        """
        proc = self._procs.get(link.worker_id)
        if proc is None or proc.pid != link.pid or proc.returncode is not None:
            return False
        log.warning(
            "fencing worker %s (pid %s): declared down after missed heartbeats; "
            "killing it so its tenants' locks are released",
            link.worker_id,
            proc.pid,
        )
        self._fenced.add(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), FENCE_WAIT_S)
        except TimeoutError:
            log.error("fenced worker %s (pid %s) has not exited yet", link.worker_id, proc.pid)
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        await stop_children(self._procs.values(), WORKER_STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def describe_bus(settings: Settings) -> str:
    """Which event bus this process uses, without credentials."""
    url = settings.amqp_url.get_secret_value() if settings.amqp_url else ""
    if not url:
        return "in-process (set VP_AMQP_URL for RabbitMQ)"
    parsed = urlsplit(url)
    host = parsed.hostname or "localhost"
    return f"RabbitMQ at {host}:{parsed.port or 5672}, exchange {settings.amqp_exchange}"


async def run_up(settings: Settings, workers: int) -> int:
    """Run coordinator + workers until a signal arrives; return the exit code."""
    configure_logging(settings, request_log_to_file=True)
    if settings.coordinator_processes > 1:
        from vectorpanda.server.group import run_group

        return await run_group(
            settings, workers, WorkerSupervisor(workers, settings), describe_bus(settings)
        )
    supervisor = WorkerSupervisor(workers, settings)
    parts = build_coordinator(settings, fencer=supervisor.fence)
    stop = stop_on_signals()
    duties: list[asyncio.Task[None]] = []

    async def on_ready(port: int, hub_port: int) -> None:
        supervisor.start(f"ws://{settings.hub_host}:{hub_port}")
        deadline = time.monotonic() + READY_WAIT_S
        while len(parts.hub.live()) < workers and time.monotonic() < deadline:
            if stop.is_set():
                return
            await asyncio.sleep(0.05)
        live = len(parts.hub.live())
        env_path = env_file_path(settings.data_dir).resolve()
        print(
            f"VectorPanda is ready at http://{settings.host}:{port} "
            f"({live}/{workers} workers live; data in {settings.data_dir.resolve()})\n"
            f"Admin token: VP_ADMIN_TOKEN in {env_path}\n"
            f"Event bus: {describe_bus(settings)}",
            flush=True,
        )
        # The scheduler and the notifier run as tasks here (own processes in the fleet).
        duties.extend(in_process_duties(settings, port, stop, parts.metrics))

    try:
        await serve_coordinator(parts, stop, on_ready)
    finally:
        stop.set()
        await asyncio.gather(*duties, return_exceptions=True)
        await supervisor.stop()
        print("VectorPanda stopped.", flush=True)
    return 0


def data_dir_default() -> Path:
    return Path(os.environ.get("VP_DATA_DIR", "./vp-data"))
