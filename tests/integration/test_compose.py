"""docker-compose.yml, the Dockerfile and deploy/nginx.conf, checked without a Docker engine.

Where the compose plugin exists, ``docker compose config`` validates the file
against the Compose schema as well.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.middleware import REQUEST_ID_PATTERN
from vectorpanda.cli import cli_commands
from vectorpanda.fleet_edge import render_nginx_conf
from vectorpanda.settings import SECRET_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
COORDINATORS = ("coordinator-1", "coordinator-2")
VP_SERVICES = (*COORDINATORS, "worker", "projections", "scheduler", "notifier", "migrate")
ONE_SHOT = ("migrate",)
# Commands of the fleet that later issues build; remove a name once its command exists.
PENDING_COMMANDS: set[str] = set()  # every role's command exists now
# which data directories each role works in
DATA_PATHS = {
    "coordinator-1": ("VP_DATA_DIR", "VP_HOT_DIR", "VP_COLD_DIR", "VP_ARCHIVE_DIR"),
    "coordinator-2": ("VP_DATA_DIR", "VP_HOT_DIR", "VP_COLD_DIR", "VP_ARCHIVE_DIR"),
    "migrate": ("VP_DATA_DIR",),
    "worker": ("VP_HOT_DIR", "VP_COLD_DIR"),
    "projections": ("VP_DATA_DIR",),
    "scheduler": ("VP_DATA_DIR", "VP_HOT_DIR", "VP_COLD_DIR", "VP_ARCHIVE_DIR"),
    "notifier": ("VP_DATA_DIR",),
}


def test_the_fleet_has_every_service_with_two_workers() -> None:
    assert set(SERVICES) == {"nginx", "rabbitmq", "postgres", *VP_SERVICES}
    assert SERVICES["worker"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize("name", sorted(set(SERVICES) - set(ONE_SHOT)))
def test_every_service_restarts_and_has_a_healthcheck(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] in ("unless-stopped", "always")
    check = service["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) >= 2
    for key in ("interval", "timeout"):
        assert re.fullmatch(r"\d+s", check[key])


@pytest.mark.parametrize("name", VP_SERVICES)
def test_vectorpanda_services_share_one_image_and_read_secrets_from_the_mounted_env_file(
    name: str,
) -> None:
    service = SERVICES[name]
    assert service["image"].startswith("vectorpanda:")
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    command = service["command"]
    assert len(command) == 1, "the role is the only argument; never secrets"
    assert command[0] in cli_commands() | PENDING_COMMANDS
    assert service["secrets"] == ["vectorpanda_env"]
    env = service["environment"]
    assert env["VP_ENV_FILE"] == "/run/secrets/vectorpanda_env"
    for key, value in env.items():
        assert key == "VP_ENV_FILE" or key[3:].lower() in Settings.model_fields, key
        assert key not in SECRET_NAMES and "amqp" not in str(value), "secrets live in the env file"
    assert service["user"] == "10001:10001" and service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    # every data path a role uses is a mounted volume
    mounts = {v.split(":")[1] for v in service.get("volumes", [])}
    assert {env[key] for key in DATA_PATHS[name]} <= mounts, name


def test_pending_commands_are_still_pending() -> None:
    """When the scheduler or notifier command lands, drop it from PENDING_COMMANDS."""
    assert not (PENDING_COMMANDS & cli_commands()), "update PENDING_COMMANDS"


def test_only_nginx_is_public_and_rabbitmq_management_is_loopback_only() -> None:
    published = {name: s.get("ports", []) for name, s in SERVICES.items() if s.get("ports")}
    assert published == {"nginx": ["443:443", "80:80"], "rabbitmq": ["127.0.0.1:15672:15672"]}
    nets = COMPOSE["networks"]
    assert nets["internal"]["internal"] is True
    assert SERVICES["worker"]["networks"] == ["internal"]
    assert SERVICES["nginx"]["networks"] == ["edge"]
    assert "internal" not in SERVICES["nginx"]["networks"]


def test_every_reference_resolves() -> None:
    networks, volumes, secrets = (set(COMPOSE[k]) for k in ("networks", "volumes", "secrets"))
    used_networks, used_volumes = set(), set()
    for name, service in SERVICES.items():
        used_networks |= set(service.get("networks", []))
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists() or source == "./deploy/certs", mount
            else:
                used_volumes.add(source)
        for secret in service.get("secrets", []):
            assert secret in secrets
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in SERVICES and dep != name
            assert spec["condition"] in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if spec["condition"] == "service_completed_successfully":
                assert dep in ONE_SHOT
    assert used_networks == networks and used_volumes == volumes
    assert COMPOSE["secrets"]["vectorpanda_env"]["file"] == "./deploy/vectorpanda.env"
    assert COMPOSE["secrets"]["postgres_password"]["file"] == "./deploy/postgres_password"


def test_volumes_are_documented_as_encrypted_storage() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "ON ENCRYPTED STORAGE" in text and "MUST sit on encrypted storage" in text
    for name in ("hot", "cold", "archive", "state", "rabbitmq", "postgres"):
        assert COMPOSE["volumes"][name]["driver_opts"]["device"].endswith(f"/{name}")


def test_example_env_files_name_every_secret_and_are_not_secrets() -> None:
    example = (ROOT / "deploy" / "vectorpanda.env.example").read_text()
    for name in SECRET_NAMES:
        assert re.search(rf"^{name}=$", example, re.M), name  # empty: no shared default secret
    assert "RABBITMQ_DEFAULT_PASS=" in (ROOT / "deploy" / "rabbitmq.env.example").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"*.env", ".venv", "vp-data", ".git", "deploy/postgres_password"} <= set(ignored)
    assert "deploy/postgres_password" in (ROOT / ".gitignore").read_text().split()


def test_dockerfile_installs_only_the_lock_file_and_runs_unprivileged() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes" in text and "requirements/runtime.txt" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["python", "-m", "vectorpanda"]' in text
    for package in ("api", "coordinator", "workers", "eventlog", "projections", "vectorpanda"):
        assert f"COPY {package} ./{package}" in text
    # the client, a package of its own, which the CLI imports
    assert "COPY clients/python/vectorpanda_client ./vectorpanda_client" in text


def test_nginx_conf_is_tls13_only_and_matches_the_body_limit() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.findall(r"^\s*ssl_protocols\s+([^;]+);", conf, re.M) == ["TLSv1.3"]
    size = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert size and int(size.group(1)) * 1024 * 1024 == Settings().max_body_bytes
    assert "Strict-Transport-Security" in conf
    assert "location = /metrics" in conf
    for header in ("X-Request-Id", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert f"proxy_set_header {header} " in conf
    assert "proxy_set_header Upgrade" not in conf  # no WebSocket is proxied
    upstream = re.findall(r"^\s*server\s+([^\s{;]+)([^;]*);", conf, re.M)
    assert [host for host, _ in upstream] == [f"{c}:8080" for c in COORDINATORS]
    for _, params in upstream:  # passive health checks on each coordinator
        assert re.search(r"max_fails=\d+", params) and re.search(r"fail_timeout=\d+s", params)


def test_nginx_keeps_the_same_incoming_request_ids_as_the_coordinator() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    kept = re.search(r"map \$http_x_request_id \$vp_request_id \{\s*\"~([^\"]+)\"", conf)
    assert kept and kept.group(1) == REQUEST_ID_PATTERN


def test_the_fleet_renders_every_marked_line(tmp_path: Path) -> None:
    conf = render_nginx_conf(
        (ROOT / "deploy" / "nginx.conf").read_text(),
        tmp_path,
        api_port=1111,
        https_port=2222,
        http_port=3333,
        cert=tmp_path / "c.pem",
        key=tmp_path / "k.pem",
    )
    assert "/var/cache/nginx" not in conf and "/dev/stdout" not in conf
    assert "server 127.0.0.1:1111 max_fails=2 fail_timeout=10s;" in conf
    assert "listen 127.0.0.1:2222 ssl;" in conf
    assert "return 301 https://$host:2222$request_uri;" in conf
    assert f"pid {tmp_path}/nginx.pid;" in conf
    several = render_nginx_conf(
        (ROOT / "deploy" / "nginx.conf").read_text(),
        tmp_path,
        api_port=[1111, 1112, 1113],
        https_port=2222,
        http_port=3333,
        cert=tmp_path / "c.pem",
        key=tmp_path / "k.pem",
    )
    servers = re.findall(r"^\s*server\s+(127\.0\.0\.1:\d+) ", several, re.M)
    assert servers == ["127.0.0.1:1111", "127.0.0.1:1112", "127.0.0.1:1113"]
    with pytest.raises(ValueError, match="lacks fleet markers"):
        render_nginx_conf(
            "events {}\n",
            tmp_path,
            api_port=1,
            https_port=2,
            http_port=3,
            cert=tmp_path,
            key=tmp_path,
        )


def _healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worker_healthcheck_sees_an_established_connection() -> None:
    check = _healthcheck()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not check.connected_to(port)
        with socket.create_connection(("127.0.0.1", port)):
            assert check.connected_to(port)
    assert check.main(["nonsense"]) == 2


def test_docker_compose_config_where_the_plugin_exists(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("no docker compose plugin here; the YAML checks above stand in for it")
    for name in ("vectorpanda.env", "rabbitmq.env"):
        target = ROOT / "deploy" / name
        if not target.exists():
            pytest.skip(f"deploy/{name} missing; `docker compose config` needs it")
    out = subprocess.run(
        [docker, "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_security_policy_says_where_to_report_and_what_is_promised() -> None:
    text = " ".join((ROOT / "SECURITY.md").read_text().split())
    assert "security@vectorpanda.com" in text and "24 hours" in text
    for topic in ("Isolation", "Key handling", "TLS", "Secrets", "Audit trail", "retention"):
        assert topic in text, topic
    assert "never deleted automatically" in text and "encrypted storage" in text


def test_nginx_retries_the_next_coordinator_only_on_connection_errors_and_only_idempotent() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.findall(r"^\s*proxy_next_upstream\s+([^;]+);", conf, re.M) == ["error timeout"]
    assert "non_idempotent" not in re.sub(r"#.*", "", conf)  # POST/PATCH never replayed
    assert re.search(r"^\s*proxy_next_upstream_tries 2;", conf, re.M)
    assert re.search(r"^\s*proxy_next_upstream_timeout \d+s;", conf, re.M)
    for code in ("http_500", "http_502", "http_503", "http_504"):
        assert code not in conf  # an HTTP answer is the coordinator's, never retried


def test_postgres_keeps_its_password_in_a_secret_file_on_the_internal_network() -> None:
    pg = SERVICES["postgres"]
    env = pg["environment"]
    assert "POSTGRES_PASSWORD" not in env
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert pg["secrets"] == ["postgres_password"]
    assert pg["volumes"] == ["postgres:/var/lib/postgresql/data"]
    assert pg["networks"] == ["internal"] and "ports" not in pg
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    text = (ROOT / "docker-compose.yml").read_text()
    assert "CHANGE_ME" not in text and "postgresql://" not in text  # the URL is in the env file
    example = (ROOT / "deploy" / "vectorpanda.env.example").read_text()
    assert re.search(
        r"^VP_DATABASE_URL=postgresql://vectorpanda:CHANGE_ME@postgres:5432/", example, re.M
    )


def test_two_interchangeable_coordinators_start_after_the_migration() -> None:
    first, second = (SERVICES[c] for c in COORDINATORS)
    assert first == second  # stateless: the same service twice
    for name in COORDINATORS:
        deps = SERVICES[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert SERVICES[name]["restart"] == "unless-stopped"
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    hubs = SERVICES["worker"]["environment"]["VP_COORDINATOR_URL"].split(",")
    assert hubs == [f"ws://{c}:8081" for c in COORDINATORS]
    admins = SERVICES["scheduler"]["environment"]["VP_ADMIN_URL"].split(",")
    assert admins == [f"http://{c}:8080" for c in COORDINATORS]
    assert set(SERVICES["nginx"]["depends_on"]) == set(COORDINATORS)
    # The duties are run twice over, safely: one scheduler leads, each email is claimed once.
    assert SERVICES["scheduler"]["deploy"]["replicas"] == 2
    assert SERVICES["notifier"]["deploy"]["replicas"] == 2
