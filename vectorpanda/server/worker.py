"""``vectorpanda worker``: one FAISS worker process, wired from its WorkerSettings."""

from __future__ import annotations

import os
import socket

from vectorpanda.process_setup import missing_secret, warn_if_shared
from vectorpanda.shutdown import stop_on_signals
from vectorpanda.worker_settings import WorkerSettings
from workers.fair_share import FairShare
from workers.main import run_worker


async def run_worker_process(settings: WorkerSettings) -> int:
    """Dial the coordinator and serve tenants until SIGTERM/SIGINT."""
    secret = settings.worker_secret
    if not secret:
        raise missing_secret(settings.data_dir, "worker_secret")
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    settings.hot.mkdir(mode=0o700, parents=True, exist_ok=True)
    warn_if_shared(settings.hot)
    stop = stop_on_signals()
    await run_worker(
        settings.coordinator_url,
        secret,
        worker_id,
        settings.hot,
        settings.wal_compact_bytes,
        settings.heartbeat_interval_s,
        stop,
        memory_budget_mb=settings.worker_memory_mb,
        cold_dir=settings.cold,
        min_free_bytes=settings.min_free_bytes,
        liveness_file=settings.worker_liveness_file,
        backup_dir=settings.backups,
        fair_share=FairShare(
            settings.worker_threads,
            settings.worker_tenant_threads,
            settings.worker_tenant_queue,
        ),
        switch_interval_s=settings.worker_switch_interval_ms / 1000,
        query_batch=settings.worker_query_batch,
    )
    return 0
