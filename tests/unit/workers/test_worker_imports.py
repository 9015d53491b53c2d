"""A worker process loads only what its work needs: no coordinator web stack, no
pydantic Settings or other commands' modules, and FAISS and the cryptography library
only once a collection (an encrypted one) needs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import vectorpanda.cli
import vectorpanda.server.worker
heavy = ("fastapi", "starlette", "sqlalchemy", "jinja2", "uvicorn", "api.app", "coordinator.hub")
heavy += ("httpx", "vectorpanda_client")  # the admin and client commands load them when run
heavy += ("faiss", "cryptography")  # loaded with the first collection (encrypted tenant)
print(",".join(name for name in heavy if name in sys.modules))
"""
# `vectorpanda worker` itself, run until it has started (made its hot directory, dialled
# a port nobody listens on), then stopped with SIGINT: what it loaded by then.
START_PROBE = """
import os, signal, sys, threading, time
from pathlib import Path
from vectorpanda.cli import main

def look():
    hot = Path(os.environ["VP_DATA_DIR"]) / "hot"  # made once everything is imported
    give_up = time.monotonic() + 60
    while not hot.is_dir() and time.monotonic() < give_up:
        time.sleep(0.05)
    time.sleep(0.5)  # and the first attempts to dial
    heavy = [name for name in sys.modules if name in HEAVY or name.split(".")[0] in HEAVY]
    print(",".join(sorted(heavy)) or "-")
    os.kill(os.getpid(), signal.SIGINT)

HEAVY = {"pydantic", "pydantic_core", "pydantic_settings", "dotenv", "sqlite3", "sqlalchemy",
    "fastapi", "starlette", "httpx", "coordinator", "eventlog", "faiss", "cryptography"}
HEAVY |= {"vectorpanda.settings", "vectorpanda.admin_cli", "vectorpanda.audit_cli",
    "vectorpanda.client_cli", "vectorpanda.records_cli", "vectorpanda.migrate_cli"}
threading.Thread(target=look, daemon=True).start()
code = main(["worker", "--coordinator", "ws://127.0.0.1:9"])
print("exit", code)
"""

# A request thread started before FAISS is loaded, and one started after, both search
# with one OpenMP thread (OpenMP's own default is one per core: this can only fail on a
# machine with several); a wider graph build puts the caller's count back.
THREADS_PROBE = """
import asyncio, tempfile
from pathlib import Path
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers import faiss_runtime

def count():
    return faiss_runtime.faiss().omp_get_max_threads()

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        service = WorkerService(TenantRegistry(Path(tmp) / "hot", 1 << 30), 1 << 30)
        service._threads.submit(lambda: None).result()  # a thread starts, FAISS unloaded
        before = faiss_runtime.loaded()
        counts = sorted({service._threads.submit(count).result() for _ in range(8)})
        import numpy as np
        from workers.hnsw_index import add_with_threads, HnswIndex
        from workers.vector_table import VectorTable
        graph = HnswIndex(VectorTable(4, False), "l2", 8, 16).new_graph()
        add_with_threads(graph, np.ones((4, 4), np.float32), 2)
        print(before, counts, faiss_runtime.faiss().omp_get_max_threads())
        await service.release_all()

asyncio.run(main())
"""


def test_the_worker_entry_point_imports_no_coordinator_libraries() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_started_worker_has_loaded_no_settings_model_or_other_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("VP_")}
    env |= {"VP_DATA_DIR": str(tmp_path), "VP_WORKER_SECRET": "s" * 32}
    out = subprocess.run(
        [sys.executable, "-c", START_PROBE], capture_output=True, text=True, env=env, timeout=60
    )
    loaded, stopped = out.stdout.strip().split("\n")
    assert stopped in ("exit 0", "exit 130"), out.stderr  # 130: SIGINT before its handler
    assert loaded == "-"
    assert (tmp_path / "hot").is_dir()  # it got as far as its data directory


def test_request_threads_use_one_openmp_thread_when_faiss_loads_late() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", THREADS_PROBE], capture_output=True, text=True, check=True, env=env
    )
    # FAISS was not loaded when the pool's threads started; each still runs one thread,
    # and the caller's own count is back where it was after a wider graph build.
    assert out.stdout.split("\n")[0] == "False [1] 1"
    assert "OMP_NUM_THREADS" not in env  # the probe ran with OpenMP's own default
