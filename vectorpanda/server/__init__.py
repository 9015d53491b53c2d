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


def _without_unused_library_parts() -> None:
    """Keep library modules a server process never runs out of it (RSS: issue 11).

    Each is imported by its library only to offer something we do not use, and each
    import is one the library makes optional (it falls back when the import fails); a
    ``None`` entry in ``sys.modules`` makes it fail. Called before anything here imports
    httpx, FastAPI or uvicorn.

    - ``httpx._main``: httpx's own command line (click, rich and pygments, about 3 MiB),
      imported by its ``__init__`` whenever click is installed (uvicorn needs click);
      a server uses httpx only as a client.
    - ``pydantic.v1``: FastAPI asks, as it declares each route and in its last-resort
      encoder, whether a type is a pydantic v1 model, and imports pydantic's v1 copy to
      ask (about 1.7 MiB); without it the answer is "no", which it is for every model here.
    - ``watchfiles``: uvicorn's file watcher for ``--reload``, never used by a server;
      uvicorn falls back to its polling reloader class, which is never started either.
    """
    for name in ("httpx._main", "pydantic.v1", "watchfiles"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


async def up(settings: Settings, workers: int) -> int:
    """Coordinator, scheduler, notifier and ``workers`` worker processes."""
    _without_unused_library_parts()
    from vectorpanda.server.launcher import run_up

    return await run_up(settings, workers)


async def coordinator_member(settings: Settings, index: int | None, workers: int) -> int:
    """One of the coordinator processes of ``up`` with VP_COORDINATOR_PROCESSES > 1."""
    _without_unused_library_parts()
    from vectorpanda.server.group import run_member

    return await run_member(settings, index, workers)


async def coordinator(settings: Settings) -> int:
    """The HTTP API and the worker hub, until a signal arrives."""
    _without_unused_library_parts()
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
    _without_unused_library_parts()
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
