"""One ``vectorpanda fleet`` (nginx + coordinator + workers + services) shared by tests/e2e.

The env file is written before start with planted canary secrets, so every
test here also feeds the secrets canary check.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fleet import Proc
from vectorpanda.fleet import port_open
from vectorpanda.fleet_edge import find_nginx

READY_PREFIX = "fleet: "


def require_nginx() -> str:
    """nginx's path; skip (fail under CI) when it is not installed."""
    nginx = find_nginx()
    if nginx is None:
        reason = "nginx is not installed (apt-get install nginx); end-to-end fleet tests need it"
        print(reason, file=sys.stderr)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return nginx


@dataclass
class RunningFleet:
    """A running ``vectorpanda fleet`` and what it announced."""

    proc: Proc
    info: dict[str, Any]
    canaries: dict[str, str]
    data_dir: Path
    issued_secrets: list[str] = field(default_factory=list)

    @property
    def https_url(self) -> str:
        return str(self.info["https_url"])

    @property
    def http_url(self) -> str:
        return str(self.info["http_url"])

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    @property
    def runtime_dir(self) -> Path:
        return Path(self.info["runtime_dir"])

    @property
    def admin_token(self) -> str:
        return self.canaries["VP_ADMIN_TOKEN"]

    def tls(self) -> ssl.SSLContext:
        """Trusts exactly the fleet's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.runtime_dir / "tls.crt"))

    def https(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.https_url, headers=headers, verify=self.tls(), timeout=30)

    def admin(self) -> httpx.Client:
        return self.https(self.admin_token)

    def new_client(self, name: str) -> tuple[str, str]:
        """(client_id, api_key) with every scope, created over HTTPS."""
        with self.admin() as admin:
            r = admin.post("/admin/v1/clients", json={"name": name, "email": f"{name}@example.com"})
            assert r.status_code == 201, r.text
            cid = r.json()["client_id"]
            r = admin.post(
                f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read", "write", "manage"]}
            )
            assert r.status_code == 201, r.text
            key = str(r.json()["api_key"])
        self.issued_secrets.append(key.split("_", 2)[2])
        return cid, key

    def log_text(self, name: str) -> str:
        return Path(self.info["logs"][name]).read_text(errors="replace")


def _canaries() -> dict[str, str]:
    tag = secrets.token_hex(6)
    return {
        "VP_ADMIN_TOKEN": f"CANARYadmin{tag}{secrets.token_urlsafe(24)}",
        "VP_KEY_PEPPER": f"CANARYpepper{tag}{secrets.token_urlsafe(24)}",
        "VP_WORKER_SECRET": f"CANARYworker{tag}{secrets.token_urlsafe(24)}",
    }


def _amqp_env() -> tuple[dict[str, str], str | None, str]:
    url = os.environ.get("VP_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    exchange = f"vp-e2e-{secrets.token_hex(4)}"
    if not port_open(5672):
        return {}, None, exchange
    env = {"VP_AMQP_URL": url, "VP_AMQP_EXCHANGE": exchange, "VP_COORDINATOR_ID": "e2e"}
    return env, url, exchange


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    require_nginx()
    data_dir = tmp_path_factory.mktemp("vp-fleet")
    canaries = _canaries()
    fd = os.open(data_dir / "vectorpanda.env", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{k}={v}\n" for k, v in canaries.items())
    amqp_env, amqp_url, exchange = _amqp_env()
    env = {**os.environ, **amqp_env, "PYTHONUNBUFFERED": "1"}
    for name in ("VP_DATA_DIR", "VP_PORT", "VP_HUB_PORT", *canaries):
        env.pop(name, None)
    argv = [sys.executable, "-m", "vectorpanda", "fleet", "--data-dir", str(data_dir)]
    popen = subprocess.Popen(
        [*argv, "--https-port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    proc = Proc(popen)
    proc.pump()
    try:
        proc.wait_for(READY_PREFIX, timeout=120)
    except RuntimeError:
        os.killpg(popen.pid, signal.SIGKILL)
        raise
    line = next(x for x in proc.output if x.startswith(READY_PREFIX))
    info = json.loads(line[len(READY_PREFIX) :])
    info["pids"]["fleet"] = popen.pid
    running = RunningFleet(proc, info, canaries, data_dir)
    try:
        yield running
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
        if amqp_url is not None:
            from tests.stack import broker_cleanup

            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    queues = [f"{exchange}.projections", f"{exchange}.key-cache.e2e"]
                    broker_cleanup(amqp_url, exchange, queues)
                    break
                except Exception:
                    time.sleep(0.5)
