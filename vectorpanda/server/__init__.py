"""The composition root: the one place that builds each VectorPanda process.

``vectorpanda <role>`` calls one function here per process; each wires its
components from one ``Settings`` object and runs them until SIGTERM/SIGINT:

- :func:`up` — the whole service on one machine (``server.launcher``),
- :func:`coordinator` — HTTP API and worker hub (``server.coordinator``),
- :func:`coordinator_member` — one of several coordinator processes of ``up``
  (``server.group``, VP_COORDINATOR_PROCESSES),
- :func:`worker` — one FAISS worker (``server.worker``),
- :func:`scheduler`, :func:`notifier` — the operating duties (``server.duties``),
- :func:`projections` — the audit projection (``server.events``).

Imports happen inside each function: a worker process loads no web stack.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from vectorpanda.shutdown import stop_on_signals

if TYPE_CHECKING:  # a worker process runs without pydantic (vectorpanda.worker_settings)
    from vectorpanda.settings import Settings
    from vectorpanda.worker_settings import WorkerSettings


def _without_httpx_command_line() -> None:
    """Keep httpx's own command line (``httpx._main``: click, rich and pygments, about
    3 MiB of RSS) out of a server process, which uses httpx only as a client.

    httpx's ``__init__`` imports it whenever click is installed (uvicorn needs click),
    and falls back to a stub when that import fails; a ``None`` entry in
    ``sys.modules`` makes it fail. Called before anything here imports httpx.
    """
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


async def up(settings: Settings, workers: int) -> int:
    """Coordinator, scheduler, notifier and ``workers`` worker processes."""
    _without_httpx_command_line()
    from vectorpanda.server.launcher import run_up

    return await run_up(settings, workers)


async def coordinator_member(settings: Settings, index: int | None, workers: int) -> int:
    """One of the coordinator processes of ``up`` with VP_COORDINATOR_PROCESSES > 1."""
    _without_httpx_command_line()
    from vectorpanda.server.group import run_member

    return await run_member(settings, index, workers)


async def coordinator(settings: Settings) -> int:
    """The HTTP API and the worker hub, until a signal arrives."""
    _without_httpx_command_line()
    from vectorpanda.server.coordinator import build_coordinator, serve_coordinator

    stop = stop_on_signals()
    parts = build_coordinator(settings)

    async def ready(port: int, hub_port: int) -> None:
        print(
            f"coordinator ready: API on {settings.host}:{port}, workers hub on "
            f"{settings.hub_host}:{hub_port}",
            flush=True,
        )

    await serve_coordinator(parts, stop, ready)
    return 0


async def worker(settings: WorkerSettings) -> int:
    """One FAISS worker that dials the coordinator's hub."""
    from vectorpanda.server.worker import run_worker_process

    return await run_worker_process(settings)


async def scheduler(settings: Settings) -> int:
    """The scheduler, acting through the admin API with VP_SCHEDULER_TOKEN."""
    _without_httpx_command_line()
    from vectorpanda.server.duties import run_scheduler_process

    await run_scheduler_process(settings, stop_on_signals())
    return 0


async def notifier(settings: Settings) -> int:
    """The notifier: events to emails, with its own metrics port if configured."""
    from vectorpanda.server.duties import run_notifier_process

    await run_notifier_process(settings, stop_on_signals())
    return 0


async def projections(settings: Settings) -> int:
    """The audit projection, following the bus (or polling the event log)."""
    from vectorpanda.server.events import run_projections

    await run_projections(settings, stop_on_signals())
    return 0
