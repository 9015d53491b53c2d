"""One validated settings object for every process.

Values come from ``VP_*`` environment variables and from the env file
(``<data_dir>/vectorpanda.env`` unless ``VP_ENV_FILE`` says otherwise).
Secrets are never taken from command-line arguments. The env file must not be
readable by group or others; loading refuses it otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vectorpanda.env_file import ENV_FILE_NAME as ENV_FILE_NAME
from vectorpanda.env_file import InsecureEnvFileError as InsecureEnvFileError
from vectorpanda.env_file import check_env_file_mode as check_env_file_mode
from vectorpanda.env_file import env_file_path as env_file_path
from vectorpanda.env_file import env_file_settings, read_env_file

SECRET_NAMES = (
    "VP_ADMIN_TOKEN",
    "VP_KEY_PEPPER",
    "VP_WORKER_SECRET",
    "VP_SCHEDULER_TOKEN",
    "VP_ANCHOR_SIGNING_KEY",
    "VP_MASTER_KEY",
)


class Settings(BaseSettings):
    """Every knob of every VectorPanda process."""

    model_config = SettingsConfigDict(env_prefix="VP_", extra="ignore")

    data_dir: Path = Path("./vp-data")
    hot_dir: Path | None = None
    cold_dir: Path | None = None
    archive_dir: Path | None = None
    # per-client backups (BackupStore, local-directory adapter); default <data>/backups
    backup_dir: Path | None = None
    log_dir: Path | None = None

    # coordinator HTTP API
    host: str = "127.0.0.1"
    port: int = 8080
    # worker hub (WebSocket server the workers dial into); internal only
    hub_host: str = "127.0.0.1"
    hub_port: int = 8081
    # `vectorpanda up`: coordinator processes sharing the HTTP port (SO_REUSEPORT); one
    # leads placement and the singleton duties (docs/process-model.md). Hub ports are
    # hub_port, hub_port + 1, ... (any free ones when hub_port is 0).
    coordinator_processes: int = Field(default=1, ge=1, le=64)
    # A group member's internal placement API (the leader's, asked by the others; worker
    # secret): where it listens and the host name the others reach it by. Loopback on one
    # machine; compose sets both so that coordinators in two containers form one group.
    internal_host: str = "127.0.0.1"
    internal_advertise_host: str | None = None
    # worker side
    coordinator_url: str = "ws://127.0.0.1:8081"
    worker_id: str | None = None
    # a worker's request threads (None: 4 x cores, at least 8) and each tenant's share of
    # them: threads at once (None: cores - 1, at least 1) and requests queued behind
    # those (past it: 429 busy); tenants waiting are served round robin
    worker_threads: int | None = Field(default=None, ge=1, le=1024)
    worker_tenant_threads: int | None = Field(default=None, ge=1, le=1024)
    worker_tenant_queue: int = Field(default=128, ge=0, le=100_000)
    # how often the worker's GIL passes between threads (Python's default: 5 ms); shorter
    # lets a tenant's short request in sooner beside another tenant's long Python work
    worker_switch_interval_ms: float = Field(default=1.0, ge=0.1, le=100)
    # micro-batching: at most this many query vectors per FAISS search, taken from the
    # queries that arrived while the worker was busy (it never waits for more); 1: off
    worker_query_batch: int = Field(default=32, ge=1, le=1024)
    # memory a worker may spend on loaded tenants before unloading idle ones (LRU)
    worker_memory_mb: int = Field(default=1024, ge=16)
    # free bytes below which a worker refuses growing writes (507); None: the larger
    # of 1 GiB and 5 % of the hot store's filesystem
    min_free_bytes: int | None = Field(default=None, ge=0)
    # coordinator: SIGKILL a silent worker running on this machine (same user) before
    # handing its tenants on; ``vectorpanda fleet`` sets it
    fence_local_workers: bool = False
    # a file the worker touches every heartbeat interval, for a container liveness check
    worker_liveness_file: Path | None = None

    # secrets
    admin_token: SecretStr | None = None
    key_pepper: SecretStr | None = None
    worker_secret: SecretStr | None = None

    # control database: a SQLAlchemy URL naming PostgreSQL (event store, write model,
    # outbox); None: the SQLite file control.sqlite3 in the data dir, as always
    database_url: SecretStr | None = None

    # event bus
    amqp_url: SecretStr | None = None
    amqp_exchange: str = Field(default="vectorpanda.events", pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    bus_delivery_limit: int = Field(default=10, ge=1)
    # names this coordinator's own key-cache eviction queue; default host-pid
    coordinator_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    relay_enabled: bool = True
    # run the audit projector inside the coordinator; None: only with the local bus
    projections_in_process: bool | None = None

    # limits
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_dimension: int = Field(default=4096, ge=1)
    max_upsert_vectors: int = Field(default=1000, ge=1)
    max_query_vectors: int = Field(default=100, ge=1)
    max_ids_per_request: int = Field(default=1000, ge=1)
    max_top_k: int = Field(default=1000, ge=1)
    max_metadata_bytes: int = Field(default=16 * 1024, ge=16)
    # filters: nesting of $and/$or, and operands (values compared against) in one filter;
    # workers compile $in/$nin into sets, so the operand bound caps parse and compile work
    max_filter_depth: int = Field(default=8, ge=1, le=64)
    max_filter_operands: int = Field(default=100_000, ge=1)

    # a separate `vectorpanda notifier` serves its email counters here (internal only)
    notifier_metrics_host: str = "127.0.0.1"
    notifier_metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # per-client request rate limits by tier (off only for load tests)
    rate_limits: bool = True
    # a client's data-plane requests inside the coordinator: running, then queued; past
    # both it gets 429 at once, so one client's backlog never fills the coordinator
    client_max_running: int = Field(default=64, ge=1)
    client_max_waiting: int = Field(default=256, ge=0)
    # a client's filtered queries/deletes (the expensive kind) forwarded to its worker at
    # once; more wait in the coordinator, behind the client's own, up to the deadline
    client_max_filtered_running: int = Field(default=1, ge=1, le=1024)
    # a key refused again and again (unknown, or over its rate) gets its 401/429 after
    # this pause: a flooding connection then sends one request per pause
    refusal_delay_s: float = Field(default=1.0, ge=0, le=5)

    # timing
    request_timeout_s: float = Field(default=10.0, gt=0)
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    # `vectorpanda up`: a worker that exits is restarted after a pause that starts at
    # 0.5 s and doubles, up to this, while it keeps exiting within 30 s of its start
    worker_restart_backoff_max_s: float = Field(default=10.0, gt=0, le=3600)
    # the rebalancer: how often it looks; a tenant that kept this many of its worker's
    # request threads busy on average (thread-seconds per second), at two looks running,
    # beside active neighbours, moves to a worker with fewer active tenants; a tenant
    # moved is left where it is for the cooldown
    rebalance_interval_s: float = Field(default=10.0, gt=0, le=3600)
    rebalance_busy_threads: float = Field(default=0.8, gt=0, le=1024)
    rebalance_cooldown_s: float = Field(default=300.0, ge=0)
    key_cache_size: int = Field(default=100_000, ge=1)
    # how often noted key uses are written as last_used_at (each key at most once a minute)
    key_use_flush_s: float = Field(default=10.0, gt=0, le=60)

    # peers whose X-Real-IP / X-Forwarded-For names the client (comma-separated CIDRs;
    # empty: trust none); from any other peer the socket address is the client's.
    # Keys' allowed_cidrs are checked against that address.
    trusted_proxies: str = "127.0.0.1/32,::1/128"

    # storage
    wal_compact_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    # scheduler: acts through the admin API with its own token (actor "scheduler")
    scheduler_token: SecretStr | None = None
    # encryption at rest: the key-encryption key that wraps every client's data key
    # (generated into the env file on first start); ``VP_MASTER_KEY_OLD`` is the previous
    # one while ``vectorpanda admin rotate-master-key`` re-wraps what it wrapped
    master_key: SecretStr | None = None
    master_key_old: SecretStr | None = None
    # seeds the Ed25519 key that signs the event log's head in census archives and anchors
    anchor_signing_key: SecretStr | None = None
    # also email each census's signed head (once a day) to ops_email through the notifier
    anchor_email: bool = False
    admin_url: str | None = None  # default http://<host>:<port> of this data dir's coordinator
    census_cron: str = "5 0 * * *"  # crontab, UTC
    # daily backup of every client with changes since its last one (crontab, UTC)
    backup_cron: str = "30 1 * * *"
    free_idle_days: int = Field(default=14, ge=1)
    payment_grace_days: int = Field(default=7, ge=1)
    usage_flush_s: float = Field(default=3600.0, gt=0)

    # notifier: SMTP from the env file; without smtp_host emails become .eml files
    ops_email: str = "ops@localhost"
    mail_from: str = "VectorPanda <noreply@localhost>"
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # an email failing this often (transiently) is quarantined; see `notifier retry-dead`
    notifier_max_attempts: int = Field(default=20, ge=1)

    # ownership convergence: a tenant unservable this long raises an operations alert
    tenant_unavailable_alert_s: float = Field(default=30.0, gt=0)

    # dashboard: OAuth login (each provider on when its id and secret are set)
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+$")
    google_client_id: str | None = None
    google_client_secret: SecretStr | None = None
    google_metadata_url: str = "https://accounts.google.com/.well-known/openid-configuration"
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    github_authorize_url: str = "https://github.com/login/oauth/authorize"
    github_token_url: str = "https://github.com/login/oauth/access_token"  # noqa: S105
    github_api_url: str = "https://api.github.com"
    # comma-separated emails that get the operator view
    operator_emails: str = ""
    session_idle_s: int = Field(default=30 * 60, ge=1)
    session_absolute_s: int = Field(default=12 * 3600, ge=1)
    login_timeout_s: int = Field(default=10 * 60, ge=1)

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_are_cidrs(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=True)
                except ValueError as exc:
                    raise ValueError(f"VP_TRUSTED_PROXIES: {part.strip()!r}: {exc}") from None
        return value

    @property
    def hot(self) -> Path:
        return self.hot_dir or self.data_dir / "hot"

    @property
    def cold(self) -> Path:
        return self.cold_dir or self.data_dir / "cold"

    @property
    def archive(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    @property
    def backups(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def logs(self) -> Path:
        return self.log_dir or self.data_dir / "logs"

    @property
    def control_db(self) -> Path:
        """The event store and the write model (clients, keys) share this file."""
        return self.data_dir / "control.sqlite3"

    @property
    def audit_db(self) -> Path:
        return self.data_dir / "audit.sqlite3"

    @property
    def anchors_dir(self) -> Path:
        """Signed chain heads, one JSON file each; copy them somewhere the database is not."""
        return self.data_dir / "anchors"

    @property
    def scheduler_db(self) -> Path:
        """APScheduler's persistent job store."""
        return self.data_dir / "scheduler.sqlite3"

    @property
    def notifier_db(self) -> Path:
        """The notifier's checkpoint, outbox and sent-log."""
        return self.data_dir / "notifier.sqlite3"

    @property
    def dead_letters_db(self) -> Path:
        """Messages the bus consumers gave up on, with the reason."""
        return self.data_dir / "dead_letters.sqlite3"

    @property
    def mail_dir(self) -> Path:
        """Where emails go as .eml files when no SMTP server is configured."""
        return self.data_dir / "mail"

    @property
    def sessions_db(self) -> Path:
        """Dashboard sessions (server-side; the cookie holds only the id)."""
        return self.data_dir / "sessions.sqlite3"


def ensure_env_file(path: Path) -> bool:
    """Create the env file with fresh random secrets (mode 0600) if missing.

    Returns True when the file was created. Missing secrets are appended to an
    existing file so that older data dirs gain new secrets on upgrade.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    created = not path.exists()
    if created:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# VectorPanda secrets. Keep this file mode 0600; never commit it.\n")
    existing = read_env_file(path)
    missing = [name for name in SECRET_NAMES if name not in existing]
    if missing:
        with path.open("a", encoding="utf-8") as fh:
            for name in missing:
                fh.write(f"{name}={secrets.token_urlsafe(32)}\n")
            fh.flush()
            os.fsync(fh.fileno())
    return created


def load_settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment and the env file (environment wins)."""
    file_values: dict[str, Any] = dict(env_file_settings(data_dir))
    values: dict[str, Any] = {**file_values, **overrides}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)
