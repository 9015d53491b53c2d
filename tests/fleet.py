"""The fleet layout as plain processes: one coordinator and N workers, each killable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.stack import free_port, read_env_file
from vectorpanda.settings import ensure_env_file


@dataclass
class Proc:
    """One child process with its output captured line by line."""

    popen: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def pump(self) -> None:
        def run() -> None:
            assert self.popen.stdout is not None
            for line in self.popen.stdout:
                self.output.append(line)

        threading.Thread(target=run, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.output):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{text!r} never printed:\n" + "".join(self.output))
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Fleet:
    """``vectorpanda coordinator`` plus ``vectorpanda worker`` processes on loopback."""

    data_dir: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    coordinator: Proc | None = None
    worker_procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "VP_DATA_DIR": str(self.data_dir),
            "VP_PORT": str(self.port),
            "VP_HUB_PORT": str(self.hub_port),
            "OPENBLAS_NUM_THREADS": "1",
        }
        env.update(extra)
        return env

    def _spawn(self, *args: str, **env: str) -> Proc:
        popen = subprocess.Popen(
            [sys.executable, "-m", "vectorpanda", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._env(**env),
        )
        proc = Proc(popen)
        proc.pump()
        return proc

    def start(self) -> Fleet:
        ensure_env_file(self.data_dir / "vectorpanda.env")
        self.start_coordinator()
        for i in range(1, self.workers + 1):
            self.start_worker(f"w{i}")
        self.wait_live(self.workers)
        return self

    def start_coordinator(self) -> None:
        self.coordinator = self._spawn("coordinator")
        self.coordinator.wait_for("coordinator ready")

    def start_worker(self, worker_id: str) -> None:
        hub = f"ws://127.0.0.1:{self.hub_port}"
        self.worker_procs[worker_id] = self._spawn(
            "worker", "--coordinator", hub, VP_WORKER_ID=worker_id
        )

    def wait_live(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz").json().get("live_workers") == count:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{count} workers never became live\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        """The last lines each process printed, for failure messages."""
        parts = []
        named = {"coordinator": self.coordinator, **self.worker_procs}
        for name, proc in named.items():
            if proc is not None:
                parts.append(f"--- {name} (exit {proc.popen.poll()}) ---")
                parts.extend(line.rstrip() for line in proc.output[-lines:])
        return "\n".join(parts)

    @property
    def admin_token(self) -> str:
        return read_env_file(self.data_dir / "vectorpanda.env")["VP_ADMIN_TOKEN"]

    def admin(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def client(self, api_key: str, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def new_client(self, name: str) -> tuple[str, str]:
        """Create a client with a full-scope key; return (client_id, api_key)."""
        with self.admin() as admin:
            body = {"name": name, "email": f"{name}@example.com", "tier": "premium"}
            cid = admin.post("/admin/v1/clients", json=body).json()["client_id"]
            scopes = {"scopes": ["read", "write", "manage"]}
            key = admin.post(f"/admin/v1/clients/{cid}/keys", json=scopes).json()["api_key"]
        return cid, key

    def owner_of(self, client_id: str) -> str | None:
        """The worker id that owns a tenant, read from the operators' view."""
        with self.admin() as admin:
            for w in admin.get("/admin/v1/workers").json()["workers"]:
                if client_id in w.get("tenant_ids", []):
                    return str(w["worker_id"])
        return None

    def stop(self) -> None:
        for proc in self.worker_procs.values():
            proc.signal(signal.SIGCONT)
            proc.stop()
        if self.coordinator is not None:
            self.coordinator.stop()
