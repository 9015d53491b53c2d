"""Start and stop a real ``vectorpanda up`` in a temporary data dir, for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

READY_RE = re.compile(r"VectorPanda is ready at (http://\S+) \((\d+)/(\d+) workers live")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


@dataclass
class Stack:
    """A running ``vectorpanda up``: its URL, admin token and process."""

    data_dir: Path
    port: int
    workers: int = 2
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    url: str = ""

    def start(self, timeout: float = 60.0) -> Stack:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("VP_DATA_DIR", None)
        cmd = [
            sys.executable,
            "-m",
            "vectorpanda",
            "up",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                m = READY_RE.search(line)
                if m:
                    self.url = m.group(1)
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vectorpanda up did not start:\n" + "".join(self.output))
        return self

    @property
    def admin_token(self) -> str:
        return read_env_file(self.data_dir / "vectorpanda.env")["VP_ADMIN_TOKEN"]

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30
        )

    def client(self, api_key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (children of the ``up`` process)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return int(self.proc.returncode)

    def new_client(self, name: str, scopes: tuple[str, ...] = ("read", "write", "manage")) -> str:
        """Create a client and return an API key for it."""
        with self.admin() as admin:
            r = admin.post("/admin/v1/clients", json={"name": name, "email": f"{name}@example.com"})
            r.raise_for_status()
            client_id = r.json()["client_id"]
            r = admin.post(f"/admin/v1/clients/{client_id}/keys", json={"scopes": list(scopes)})
            r.raise_for_status()
            return str(r.json()["api_key"])


@contextmanager
def running_stack(data_dir: Path, workers: int = 2, **env: str) -> Iterator[Stack]:
    stack = Stack(data_dir=data_dir, port=free_port(), workers=workers, env=env).start()
    try:
        yield stack
    finally:
        stack.stop()
