"""``vectorpanda fleet``: the docker-compose topology as plain processes on this machine.

nginx (Debian's package, TLS 1.3, a self-signed certificate made at start) in
front of one coordinator (or several, ``--coordinators``, with the control
plane on this machine's PostgreSQL), N workers, and the background services,
all on loopback, with RabbitMQ when one answers.

PostgreSQL: ``VP_DATABASE_URL`` in the data dir's env file, or
``--database-url`` for a URL without a password (loopback trust or peer
authentication, or a ~/.pgpass entry): a password never goes on a command
line. The fleet migrates the schema (``vectorpanda migrate``) before the
coordinators start. Without either, the SQLite files as always. nginx runs as a non-daemon child
with a config rendered from ``deploy/nginx.conf`` into a runtime directory
that also holds its pid, logs and temp files; /etc/nginx and /var/log/nginx
are never touched. Secrets stay in the data dir's env file (0600): no child
gets one on its command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from vectorpanda.fleet_edge import (
    NGINX_TEMPLATE,
    find_nginx,
    render_nginx_conf,
    write_self_signed_cert,
)
from vectorpanda.settings import (
    InsecureEnvFileError,
    ensure_env_file,
    env_file_path,
    read_env_file,
)

BACKGROUND_SERVICES = ("projections", "scheduler", "notifier")
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 1):
        return True
    return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Fleet:
    """Start, watch and stop the whole fleet; ``summary()`` says what runs where."""

    data_dir: Path
    workers: int = 2
    https_port: int = 8443
    http_port: int = 8088
    amqp_url: str | None = None
    runtime_dir: Path | None = None
    nginx: str | None = None
    say: IO[str] = sys.stdout
    children: list[Child] = field(default_factory=list)
    not_started: dict[str, str] = field(default_factory=dict)
    api_port: int = 0
    hub_port: int = 0
    coordinators: int = 1
    database_url: str | None = None
    api_ports: list[int] = field(default_factory=list)
    hub_ports: list[int] = field(default_factory=list)
    _own_runtime: bool = False

    def _print(self, text: str) -> None:
        print(text, file=self.say, flush=True)

    def _env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            VP_DATA_DIR=str(self.data_dir),
            VP_HOST="127.0.0.1",
            VP_PORT=str(self.api_port),
            VP_HUB_HOST="127.0.0.1",
            VP_HUB_PORT=str(self.hub_port),
            # Several coordinators: a worker dials every one (comma-separated hubs).
            VP_COORDINATOR_URL=",".join(
                f"ws://127.0.0.1:{port}" for port in self.hub_ports or [self.hub_port]
            ),
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
            OMP_WAIT_POLICY="PASSIVE",
        )
        if self.amqp_url:
            env["VP_AMQP_URL"] = self.amqp_url
        if self.database_url:
            env["VP_DATABASE_URL"] = self.database_url
        # without a broker the separate projections process polls the log instead
        env["VP_PROJECTIONS_IN_PROCESS"] = "false"
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        logs = self.data_dir / "logs" / "fleet"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def _vp(self, name: str, *args: str, **env: str) -> Child:
        return self._spawn(name, [sys.executable, "-m", "vectorpanda", *args], self._env(**env))

    def _wait(self, what: str, ready: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = self.dead()
            if dead is not None:
                raise RuntimeError(
                    f"{dead.name} exited while waiting for {what}; see {dead.log_path}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def _live_workers(self) -> int:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.api_port}/readyz", timeout=2)
            return int(r.json().get("live_workers", 0))
        except (httpx.HTTPError, ValueError):
            return 0

    def start(self) -> Fleet:
        self.data_dir = self.data_dir.resolve()
        created = ensure_env_file(env_file_path(self.data_dir))
        read_env_file(env_file_path(self.data_dir))  # refuses a group/world-readable file
        if created:
            self._print(f"Wrote new secrets to {env_file_path(self.data_dir)} (mode 0600)")
        self.nginx = self.nginx or find_nginx()
        if self.nginx is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self._choose_database()
        self.api_ports = [free_port() for _ in range(self.coordinators)]
        self.hub_ports = [free_port() for _ in range(self.coordinators)]
        self.api_port, self.hub_port = self.api_ports[0], self.hub_ports[0]
        self.https_port = self.https_port or free_port()
        self.http_port = self.http_port or free_port()
        self._choose_broker()
        if self.on_postgres:
            self._migrate()
        for n in range(1, self.coordinators + 1):
            self._start_coordinator(n)
        for api in self.api_ports:
            self._wait(f"the coordinator on port {api}", lambda api=api: port_open(api))
        for i in range(1, self.workers + 1):
            self._start_worker(f"w{i}")
        for service in BACKGROUND_SERVICES:
            self._vp(service, service)
        self._wait(f"{self.workers} live workers", lambda: self._live_workers() == self.workers)
        self._start_nginx()
        self._wait("nginx", lambda: port_open(self.https_port) and port_open(self.http_port))
        return self

    def _start_coordinator(self, n: int) -> Child:
        name = "coordinator" if self.coordinators == 1 else f"coordinator-{n}"
        api, hub = self.api_ports[n - 1], self.hub_ports[n - 1]
        extra = {"VP_PORT": str(api), "VP_HUB_PORT": str(hub)}
        if self.coordinators > 1:
            # One group on this machine, as `up` runs it (docs/process-model.md): the lock
            # holder alone places tenants and runs the duties, the others route by what the
            # workers hold; each listens on its own port, nginx in front of them all. Workers
            # start after the coordinators, so a member does not wait for them.
            extra["VP_LOG_DIR"] = str(self.data_dir / "logs" / name)  # a request log each
            extra["VP_COORDINATOR_PROCESSES"] = str(self.coordinators)
            member = ["coordinator-member", "--index", str(n - 1), "--workers", "0"]
            return self._vp(name, *member, VP_FENCE_LOCAL_WORKERS="true", **extra)
        # Workers run here as our own user: the coordinator fences a frozen one itself.
        return self._vp(name, "coordinator", VP_FENCE_LOCAL_WORKERS="true", **extra)

    def restart_coordinator(self, dead: Child) -> bool:
        """With several coordinators, start a new one in place of one that exited (nginx
        sends its requests to the others meanwhile); False for anything else."""
        if self.coordinators < 2 or not dead.name.startswith("coordinator-"):
            return False
        self.children.remove(dead)
        self._print(
            f"!!! {dead.name} exited with {dead.popen.returncode}; the other coordinators "
            f"serve meanwhile; starting a new one (its log: {dead.log_path})"
        )
        self._start_coordinator(int(dead.name.removeprefix("coordinator-")))
        return True

    def _start_worker(self, worker_id: str) -> Child:
        return self._vp(f"worker-{worker_id}", "worker", VP_WORKER_ID=worker_id)

    def restart_worker(self, dead: Child) -> bool:
        """Start a new worker in place of one that exited (fenced or crashed); False if
        ``dead`` is not a worker."""
        if not dead.name.startswith("worker-"):
            return False
        self.children.remove(dead)
        self._print(
            f"!!! {dead.name} exited with {dead.popen.returncode} "
            f"(-9: fenced after missed heartbeats); starting a new one (its log: {dead.log_path})"
        )
        self._start_worker(dead.name.removeprefix("worker-"))
        return True

    @property
    def on_postgres(self) -> bool:
        return bool(self.database_url) or self._env_file_names_a_database()

    def _env_file_names_a_database(self) -> bool:
        if os.environ.get("VP_DATABASE_URL"):
            return True
        return bool(read_env_file(env_file_path(self.data_dir)).get("VP_DATABASE_URL"))

    def _choose_database(self) -> None:
        if self.database_url:
            from sqlalchemy.engine import make_url

            from eventlog.database import postgres_url

            if make_url(postgres_url(self.database_url)).password is not None:
                raise RuntimeError(
                    "--database-url must not carry a password (it would show in the process "
                    "list): put VP_DATABASE_URL in the env file, or use a ~/.pgpass entry"
                )
        if self.coordinators < 1:
            raise RuntimeError("--coordinators must be 1 or more")
        if self.coordinators > 1 and not self.on_postgres:
            raise RuntimeError(
                "several coordinators share one control database: set VP_DATABASE_URL in "
                f"{env_file_path(self.data_dir)} or pass --database-url (PostgreSQL)"
            )

    def _migrate(self) -> None:
        """The schema at the newest revision before any coordinator starts."""
        child = self._vp("migrate", "migrate", "--data-dir", str(self.data_dir))
        try:
            code = child.popen.wait(120)
        except subprocess.TimeoutExpired:
            child.popen.kill()
            code = child.popen.wait()
        self.children.remove(child)
        if code != 0:
            raise RuntimeError(f"vectorpanda migrate failed (exit {code}); see {child.log_path}")

    def _choose_broker(self) -> None:
        self.amqp_url = self.amqp_url or os.environ.get("VP_AMQP_URL")
        if not self.amqp_url and port_open(5672):
            self.amqp_url = DEFAULT_AMQP_URL
        if not self.amqp_url:
            self.not_started["rabbitmq"] = (
                "no broker at 127.0.0.1:5672 and no VP_AMQP_URL; events are relayed in "
                "process and the projections service polls the event log"
            )

    def _start_nginx(self) -> None:
        assert self.nginx is not None
        if self.runtime_dir is None:
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="vectorpanda-fleet-"))
            self._own_runtime = True
        rt = self.runtime_dir.resolve()
        # nginx workers run as an unprivileged user and must reach temp/ below
        rt.mkdir(parents=True, exist_ok=True)
        rt.chmod(0o711)
        (rt / "logs").mkdir(mode=0o700, exist_ok=True)
        (rt / "temp").mkdir(exist_ok=True)
        (rt / "temp").chmod(0o711)  # explicit: the process umask is 077
        cert, key = write_self_signed_cert(rt)
        conf = render_nginx_conf(
            NGINX_TEMPLATE.read_text(encoding="utf-8"),
            rt,
            api_port=self.api_ports or [self.api_port],
            https_port=self.https_port,
            http_port=self.http_port,
            cert=cert,
            key=key,
        )
        (rt / "nginx.conf").write_text(conf, encoding="utf-8")
        argv = [self.nginx, "-p", str(rt), "-c", str(rt / "nginx.conf")]
        argv += ["-e", str(rt / "logs" / "error.log"), "-g", "daemon off;"]
        check = subprocess.run([*argv[:-2], "-t"], capture_output=True, text=True)  # noqa: S603
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected the rendered config:\n{check.stderr}")
        self._spawn("nginx", argv, dict(os.environ))

    def summary(self) -> dict[str, Any]:
        return {
            "https_url": f"https://127.0.0.1:{self.https_port}",
            "http_url": f"http://127.0.0.1:{self.http_port}",
            "api_url": f"http://127.0.0.1:{self.api_port}",
            "api_urls": [f"http://127.0.0.1:{port}" for port in self.api_ports],
            "hub_port": self.hub_port,
            "control_database": "postgresql" if self.on_postgres else "sqlite",
            "amqp": bool(self.amqp_url),
            "data_dir": str(self.data_dir),
            "runtime_dir": str(self.runtime_dir),
            "pids": {c.name: c.popen.pid for c in self.children},
            "logs": {c.name: str(c.log_path) for c in self.children},
            "not_started": self.not_started,
        }

    def announce(self) -> None:
        for service, why in self.not_started.items():
            self._print(f"!!! NOT STARTED: {service}: {why}.")
        s = self.summary()
        self._print(
            f"VectorPanda fleet is ready at {s['https_url']} ({self.workers}/{self.workers} "
            f"workers live; plain HTTP {s['http_url']} redirects; internal API {s['api_url']}, "
            f"metrics at {s['api_url']}/metrics)"
        )
        self._print(f"Admin token: VP_ADMIN_TOKEN in {env_file_path(self.data_dir)}")
        cert = Path(str(s["runtime_dir"])) / "tls.crt"
        self._print(
            f"TLS certificate (self-signed, made at start): {cert} -- "
            f"clients trust it with VP_CA_BUNDLE={cert}"
        )
        self._print("fleet: " + json.dumps(s, sort_keys=True))

    def dead(self) -> Child | None:
        return next((c for c in self.children if c.popen.poll() is not None), None)

    def stop(self) -> None:
        for child in reversed(self.children):  # nginx first, coordinator last
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
            try:
                child.popen.wait(15)
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait()
        if self._own_runtime and self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def run_fleet(fleet: Fleet) -> int:
    """Start the fleet, run until SIGINT/SIGTERM or a child dies, then stop it all."""
    stopping = {"signal": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        fleet.start()
        fleet.announce()
        while not stopping["signal"]:
            dead = fleet.dead()
            if dead is not None and (fleet.restart_worker(dead) or fleet.restart_coordinator(dead)):
                continue
            if dead is not None:
                fleet._print(
                    f"!!! {dead.name} exited with {dead.popen.returncode}; stopping the fleet "
                    f"(its log: {dead.log_path})"
                )
                code = 1
                break
            time.sleep(0.2)
    except InsecureEnvFileError:
        raise
    except RuntimeError as exc:
        fleet._print(f"vectorpanda fleet: {exc}")
        code = 1
    finally:
        fleet.stop()
        fleet._print("VectorPanda fleet stopped.")
    return code
