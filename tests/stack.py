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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

READY_RE = re.compile(r"VectorPanda is ready at (http://\S+) \((\d+)/(\d+) workers live")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_NEW_CONNECTIONS = threading.local()


def on_new_connection(method: str, url: str, **kw: Any) -> httpx.Response:
    """One request on a connection of its own (no keep-alive), so that the kernel spreads
    such requests over the processes sharing a port. Each thread has its own client:
    in a pool shared between threads, a connection that turned idle while the pool was
    handing out connections can be given to one thread's request and then closed, as a
    surplus idle connection, by another thread before the first has used it (httpcore
    1.0; that thread's read fails with EBADF, seen once in CI)."""
    client = getattr(_NEW_CONNECTIONS, "client", None)
    if client is None:
        limits = httpx.Limits(max_keepalive_connections=0)
        client = _NEW_CONNECTIONS.client = httpx.Client(timeout=30, limits=limits)
    return client.request(method, url, **kw)


def census_cron_away_from_now(now: datetime | None = None) -> str:
    """A daily census crontab (UTC) 12 hours from now: no scheduled census fires mid-test.

    The census due on start is still taken once (``Stack.wait_for_startup_census``);
    only the cron's own firing (00:05 UTC by default) could otherwise add a second
    ``census.snapshot_taken`` to a test that happens to run across it.
    """
    moment = (now or datetime.now(UTC)) + timedelta(hours=12)
    return f"{moment.minute} {moment.hour} * * *"


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
    started_at: datetime | None = None  # wall clock (UTC) just before the process started

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
        self.started_at = datetime.now(UTC)
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

    def wait_for_startup_census(self, timeout: float = 30.0) -> None:
        """Block until the scheduler's first census is recorded.

        On a fresh data dir the scheduler inside ``up`` takes the census that
        is due at once (``census.snapshot_taken``); tests that count events
        wait for it so that the count does not depend on when it lands.
        """
        deadline = time.monotonic() + timeout
        with self.admin() as admin:
            while True:
                params = {"type": "census.snapshot_taken", "after_seq": 0}
                if admin.get("/admin/v1/events", params=params).json()["events"]:
                    return
                assert time.monotonic() < deadline, "no startup census:\n" + "".join(
                    self.output[-30:]
                )
                time.sleep(0.05)

    def client(self, api_key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (children of the ``up`` process)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if _is_worker(int(p))]

    def coordinator_pids(self) -> list[int]:
        """Pids of the coordinator processes (VP_COORDINATOR_PROCESSES > 1), else []."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split() if _cmdline_has(int(p), b"coordinator-member")]

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

    def new_client(
        self,
        name: str,
        scopes: tuple[str, ...] = ("read", "write", "manage"),
        tier: str = "free",
    ) -> str:
        """Create a client and return an API key for it."""
        with self.admin() as admin:
            body = {"name": name, "email": f"{name}@example.com", "tier": tier}
            r = admin.post("/admin/v1/clients", json=body)
            r.raise_for_status()
            client_id = r.json()["client_id"]
            r = admin.post(f"/admin/v1/clients/{client_id}/keys", json={"scopes": list(scopes)})
            r.raise_for_status()
            return str(r.json()["api_key"])


def _cmdline_has(pid: int, word: bytes) -> bool:
    try:
        return word in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False


def _is_worker(pid: int) -> bool:
    return _cmdline_has(pid, b"worker")


@contextmanager
def running_stack(data_dir: Path, workers: int = 2, **env: str) -> Iterator[Stack]:
    stack = Stack(data_dir=data_dir, port=free_port(), workers=workers, env=env).start()
    try:
        yield stack
    finally:
        stack.stop()


# --- RabbitMQ for tests --------------------------------------------------------

DEFAULT_TEST_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def amqp_url_or_skip() -> str:
    """The test broker's URL; skip (or fail under CI) when nothing answers there."""
    import pytest
    from yarl import URL

    url = os.environ.get("VP_TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)
    parsed = URL(url)
    try:
        socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5672), 2).close()
    except OSError as exc:
        reason = f"no RabbitMQ at VP_TEST_AMQP_URL={url} ({exc}); testcontainers is not installed"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return url


class TcpProxy:
    """A loopback TCP proxy (own thread and loop) that can cut every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import asyncio

        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.accepting = True
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._start())

    def _call(self, coro):  # type: ignore[no-untyped-def]
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader, writer) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src, dst) -> None:  # type: ignore[no-untyped-def]
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except Exception:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

    async def _cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """Kill every open connection (RST) and refuse new ones until ``restore``."""
        self.accepting = False
        self._call(self._cut())

    def restore(self) -> None:
        self.accepting = True

    def url(self, amqp_url: str) -> str:
        from yarl import URL

        return str(URL(amqp_url).with_host("127.0.0.1").with_port(self.port))

    def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def broker_cleanup(url: str, exchange: str, queues: list[str]) -> None:
    """Delete a test's exchanges and queues (with their dead-letter queues)."""
    import asyncio

    from eventlog.amqp_bus import RabbitBus

    async def run() -> None:
        bus = RabbitBus(url, exchange=exchange)
        await bus.connect()
        for name in queues:
            await bus.delete_queue(name)
        await bus.delete_exchanges()
        await bus.close()

    asyncio.run(run())


def start_coordinator(data_dir: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """A ``vectorpanda coordinator`` process on ``port``; returns once it serves HTTP."""
    from vectorpanda.settings import ensure_env_file

    ensure_env_file(data_dir / "vectorpanda.env")
    full = {
        **os.environ,
        **env,
        "PYTHONUNBUFFERED": "1",
        "VP_PORT": str(port),
        "VP_HUB_PORT": str(free_port()),
    }
    full.pop("VP_DATA_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vectorpanda", "coordinator", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full,
        start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("coordinator died:\n" + "".join(lines))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("coordinator did not start:\n" + "".join(lines))
