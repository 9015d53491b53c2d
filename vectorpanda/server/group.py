"""``vectorpanda up`` with several coordinator processes sharing the HTTP port.

VP_COORDINATOR_PROCESSES > 1: the ``up`` process becomes a supervisor. It starts that
many coordinator processes (``vectorpanda coordinator-member``), each binding the public
port with SO_REUSEPORT (the kernel spreads connections over them) and a workers hub of
its own, and the worker processes, which dial into every hub. It restarts any process
that dies. One coordinator process leads (coordinator/leader.py): it places tenants and
runs the singleton duties; the others serve the whole API and ask it to place tenants
nobody holds (coordinator/follower.py). docs/process-model.md has the whole picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine

from api.internal import internal_app
from coordinator.accounts import Accounts
from coordinator.accounts.commands import (
    ChangeTier,
    DeleteClient,
    PauseClient,
    ResumeClient,
    RevokeApiKey,
)
from coordinator.coherence import CoherenceBoard, LogFollower
from coordinator.encryption_duty import EncryptionDuty
from coordinator.fencing import fence_local_worker
from coordinator.health import HealthPolicy, HealthTracker
from coordinator.leader import Leadership
from coordinator.membership import GroupMembership
from coordinator.shared_limits import reset_table
from coordinator.storage_watch import StorageWatch
from eventlog.store import SqliteEventStore
from vectorpanda.control_db import control_engine, database_url
from vectorpanda.server.run_files import (
    coherence_board,
    rate_limit_table,
    run_dir,
    this_host,
    this_host_or_name,
)
from vectorpanda.settings import Settings, env_file_path
from vectorpanda.shutdown import stop_children

log = logging.getLogger("vectorpanda.group")


class WorkerProcesses(Protocol):
    def start(self, hub_url: str) -> None: ...

    async def stop(self) -> None: ...


READY_WAIT_S = 60.0
STOP_GRACE_S = 20.0
LEADERLESS_EXIT = 3  # a member that lost its leadership lock exits with this


# Commands after which a cached key may no longer be used as it was.
COHERENT_COMMANDS = (RevokeApiKey, PauseClient, ResumeClient, ChangeTier, DeleteClient)


def wait_for_every_process(
    accounts: Accounts,
    store: SqliteEventStore,
    board: CoherenceBoard | GroupMembership,
    index: int,
) -> None:
    """Make a revocation (pause, resume, deletion, tier change) return only once every
    coordinator process has applied it: read-your-writes across processes."""
    handle = accounts.handle

    async def coherent(cmd: Any) -> Any:
        result = await handle(cmd)
        if isinstance(cmd, COHERENT_COMMANDS):
            head = await asyncio.to_thread(store.head)
            await board.wait_applied(index, head.seq)
        return result

    setattr(accounts, "handle", coherent)  # noqa: B010 - an instance's own wrapper


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _free_ports(host: str, count: int) -> list[int]:
    held = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((host, 0))
        held.append(s)
    ports = [int(s.getsockname()[1]) for s in held]
    for s in held:
        s.close()
    return ports


# --- the supervisor (the ``up`` process) --------------------------------------------


class MemberSupervisor:
    """Starts the coordinator processes and restarts any that exits."""

    def __init__(self, settings: Settings, port: int, hub_ports: list[int], workers: int) -> None:
        self._settings = settings
        self._port = port
        self._hub_ports = hub_ports
        self._workers = workers
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    def start(self) -> None:
        for index in range(len(self._hub_ports)):
            self._tasks.append(asyncio.create_task(self._keep_running(index)))

    def _env(self, index: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "VP_DATA_DIR": str(self._settings.data_dir.resolve()),
                "VP_HOST": self._settings.host,
                "VP_PORT": str(self._port),
                "VP_HUB_PORT": str(self._hub_ports[index]),
                "VP_COORDINATOR_PROCESSES": str(len(self._hub_ports)),
                "VP_PROJECTIONS_IN_PROCESS": "1" if self._settings.projections_in_process else "0",
            }
        )
        if self._settings.projections_in_process is None:
            env.pop("VP_PROJECTIONS_IN_PROCESS")
        return env

    async def _keep_running(self, index: int) -> None:
        backoff = 0.2
        while not self._stopping:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "vectorpanda",
                "coordinator-member",
                "--index",
                str(index),
                "--workers",
                str(self._workers),
                env=self._env(index),
            )
            self.procs[index] = proc
            code = await proc.wait()
            if self._stopping:
                return
            self.restarts += 1
            backoff = 0.2 if time.monotonic() - started > 30 else min(backoff * 2, 5.0)
            log.warning(
                "coordinator process %d exited with %s; restarting in %.1fs", index, code, backoff
            )
            await asyncio.sleep(backoff)

    async def stop(self) -> None:
        self._stopping = True
        await stop_children(self.procs.values(), STOP_GRACE_S)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _ready_reports(settings: Settings, count: int) -> list[dict[str, object]]:
    reports = []
    for index in range(count):
        path = run_dir(settings) / f"coordinator-{index}.ready"
        with contextlib.suppress(OSError, ValueError):
            reports.append(json.loads(path.read_text(encoding="utf-8")))
    return reports


async def run_group(
    settings: Settings, workers: int, supervisor: WorkerProcesses, bus_description: str
) -> int:
    """``vectorpanda up`` as a supervisor of coordinator and worker processes.

    ``supervisor`` starts and restarts the worker processes (the launcher's own).
    """
    from vectorpanda.shutdown import stop_on_signals

    count = settings.coordinator_processes
    stop = stop_on_signals()
    run_dir(settings).mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in run_dir(settings).glob("coordinator-*.ready"):
        stale.unlink()
    reset_table(rate_limit_table(settings))
    coherence_board(settings).unlink(missing_ok=True)
    # Held (bound, not listening) for the group's life: port 0 resolves here once.
    public = _reuse_port_socket(settings.host, settings.port)
    port = int(public.getsockname()[1])
    hub_ports = (
        [settings.hub_port + i for i in range(count)]
        if settings.hub_port
        else _free_ports(settings.hub_host, count)
    )
    members = MemberSupervisor(settings, port, hub_ports, workers)
    members.start()
    supervisor.start(",".join(f"ws://{settings.hub_host}:{p}" for p in hub_ports))
    deadline = time.monotonic() + READY_WAIT_S
    reports = _ready_reports(settings, count)
    while len(reports) < count and time.monotonic() < deadline and not stop.is_set():
        await asyncio.sleep(0.1)
        reports = _ready_reports(settings, count)
    live = min((int(str(r.get("live", 0))) for r in reports), default=0)
    if not stop.is_set():
        print(
            f"VectorPanda is ready at http://{settings.host}:{port} "
            f"({live}/{workers} workers live; data in {settings.data_dir.resolve()}; "
            f"{len(reports)}/{count} coordinator processes)\n"
            f"Admin token: VP_ADMIN_TOKEN in {env_file_path(settings.data_dir).resolve()}\n"
            f"Event bus: {bus_description}",
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        # Coordinators first: their last usage flush still reaches the database.
        await members.stop()
        await supervisor.stop()
        public.close()
        print("VectorPanda stopped.", flush=True)
    return 0


# --- one coordinator process -------------------------------------------------------


class OtherHostMember(RuntimeError):
    """A live member of this group runs on another host: the group must share one host."""


def group_membership(settings: Settings, engine: Engine | None = None) -> GroupMembership | None:
    """The group's membership rows in PostgreSQL (members may run on several hosts), or
    None on SQLite (one host's group shares files under ``run/``). ``engine``: the pool to
    beat on (a new one on the control database by default)."""
    if database_url(settings) is None:
        return None
    host = this_host_or_name()
    folder = run_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # One rate domain: the processes of this kernel that map this very directory's table,
    # whatever path it is mounted at (the same volume in two containers: one domain).
    found = folder.stat()
    domain = f"{host}:{found.st_dev}:{found.st_ino}"
    label = f"{socket.gethostname()}:{folder.resolve()}"
    return GroupMembership(engine or control_engine(settings), host, domain, label)


def _refuse_other_hosts(folder: Path, index: int, count: int, host: str) -> None:
    """Raise OtherHostMember when a live member (its slot lock held) recorded another host."""
    import fcntl

    for other in range(count):
        lock = folder / f"member-{other}.lock"
        if other == index or not lock.exists():
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            continue  # nobody holds it: that member is gone, wherever it ran
        except OSError:
            pass  # held: that member is alive
        finally:
            os.close(fd)
        try:
            theirs = (folder / f"member-{other}.host").read_text().strip()
        except OSError:
            continue  # it has not said yet; it will see this one's when it checks
        if theirs and theirs != host:
            raise OtherHostMember(
                f"member {other} of this coordinator group runs on another host (kernel "
                f"boot id {theirs}, here {host}). The members share rate limits, the "
                "coherence board and the leader's address as files under the data "
                "volume's run/ directory, which only processes of one host can share: run "
                "every member of a group on one host, or put the control plane on PostgreSQL "
                "(VP_DATABASE_URL), where the group meets in the database "
                "(docs/process-model.md)"
            )


def claim_member_slot(
    settings: Settings, host: str | None = None, check_hosts: bool = True
) -> tuple[int, int]:
    """A free member index of the group (0 .. processes-1) and the descriptor of its held
    slot lock, for members started without ``--index`` (compose's identical services on one
    shared data volume). The lock goes with the process, so a restarted one takes it again.

    A member refuses to join (OtherHostMember) when a live member recorded another host
    (``host``: this kernel's boot id, by default): the group's shared files work on one
    host only. ``check_hosts`` False (the control plane on PostgreSQL, where the group
    meets in the database, coordinator/membership.py): no check."""
    import fcntl

    host = host if host is not None else this_host()
    if not check_hosts:
        host = None
    folder = run_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(settings.coordinator_processes):
            fd = os.open(folder / f"member-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if host is not None:
                try:
                    _refuse_other_hosts(folder, index, settings.coordinator_processes, host)
                except OtherHostMember:
                    os.close(fd)
                    raise
                (folder / f"member-{index}.host").write_text(host + "\n")
            return index, fd
        log.warning("every member slot of the coordinator group is taken; waiting for one")
        time.sleep(1.0)


def advertised_host(settings: Settings) -> str:
    """The host the other members reach this one's internal API by."""
    if settings.internal_advertise_host:
        return settings.internal_advertise_host
    if settings.internal_host in ("0.0.0.0", "::"):  # nosec B104 - a comparison, not a bind
        return socket.gethostbyname(socket.gethostname())  # this container's address
    return settings.internal_host


async def run_member(settings: Settings, index: int | None, workers: int) -> int:
    """One coordinator process of the group: serve until a signal; lead if the lock is ours."""
    slot_fd = None
    if index is None:
        try:
            # On PostgreSQL the group spans hosts through the database: no one-host check.
            index, slot_fd = claim_member_slot(settings, check_hosts=database_url(settings) is None)
        except OtherHostMember as exc:
            log.error("%s", exc)
            return 2
    try:
        return await _run_member(settings, index, workers)
    finally:
        if slot_fd is not None:
            os.close(slot_fd)


async def _run_member(settings: Settings, index: int, workers: int) -> int:
    from vectorpanda.server.coordinator import (
        _finish,
        _freeze_startup_heap,
        build_coordinator,
        quiet_server,
    )
    from vectorpanda.server.duties import in_process_duties
    from vectorpanda.shutdown import stop_on_signals

    stop = stop_on_signals()
    # the lock: flock on the data dir, or PostgreSQL's advisory lock on the control database
    # One pool for the two, apart from the store's. Leadership's session lock is safe on
    # a shared pool: its connection stays checked out while it leads and is invalidated,
    # never checked back in, when it stops (or fails mid-try), so no other user is ever
    # handed a session holding the lock. The store's writers are kept off it: they hold
    # pooled connections while queued on the global write lock, and a heartbeat starved
    # behind them for LIVE_S would make this member look gone to the others, who would
    # then stop waiting for it to apply a revocation.
    group_engine = control_engine(settings) if database_url(settings) is not None else None
    leadership = Leadership(settings.data_dir, group_engine)
    # PostgreSQL: membership, applied seqs and the leader's address in the database
    membership = group_membership(settings, group_engine)
    # hub and router know from the start that they lead only while holding it
    # `up`'s workers run on this machine, as this user: the leader (only) fences them
    parts = build_coordinator(
        settings, fencer=fence_local_worker, leadership=leadership, membership=membership
    )
    app = parts.app
    secret = settings.worker_secret.get_secret_value() if settings.worker_secret else ""
    router, hub = parts.router, parts.hub

    def leading() -> bool:
        return leadership.is_leader

    hub_port = await hub.start(settings.hub_host, settings.hub_port)

    public = _reuse_port_socket(settings.host, settings.port)
    server = quiet_server(app)
    serving: asyncio.Task[None] | None = None
    internal = quiet_server(
        internal_app(router, secret, leading), host=settings.internal_host, port=0
    )
    internal_serving = asyncio.create_task(internal.serve())
    tracker = HealthTracker(
        hub, HealthPolicy(interval_s=settings.heartbeat_interval_s), router,
        settings.rebalance_interval_s,
    )  # fmt: skip
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(tracker.run(stop), name="health"),
    ]
    board: CoherenceBoard | GroupMembership
    if membership is not None:
        board = membership
        tasks.append(asyncio.create_task(membership.run(stop), name="membership"))
    else:
        board = CoherenceBoard(coherence_board(settings), settings.coordinator_processes)
    if parts.events is not None:
        follower_log = LogFollower(
            parts.events.store,
            parts.accounts.key_cache,
            on_applied=lambda seq: board.post(index, seq),
        )
        tasks.append(asyncio.create_task(follower_log.run(stop), name="key-coherence"))
        wait_for_every_process(parts.accounts, parts.events.store, board, index)
    duties_stop = asyncio.Event()
    duties = [
        asyncio.create_task(parts.meter.run(duties_stop, settings.usage_flush_s), name="usage"),
        asyncio.create_task(
            parts.accounts.key_uses.run(duties_stop, settings.key_use_flush_s), name="key-uses"
        ),
    ]
    leader_tasks: list[asyncio.Task[None]] = []
    eventing: asyncio.Task[None] | None = None

    async def on_gain() -> None:
        nonlocal eventing
        adopted = router.adopt_held()
        while not internal.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
        internal_port = int(internal.servers[0].sockets[0].getsockname()[1])
        url = f"http://{advertised_host(settings)}:{internal_port}"
        if membership is not None:
            await asyncio.to_thread(membership.publish_leader, url)
        else:
            leadership.publish(url)
        log.warning(
            "coordinator process %d (pid %d) leads placement; adopted %d held tenants",
            index,
            os.getpid(),
            adopted,
        )
        if parts.events is not None:
            eventing = asyncio.create_task(parts.events.run(stop), name="events")
        leader_tasks.append(
            asyncio.create_task(parts.pause.run(duties_stop), name="pause-reconcile")
        )
        leader_tasks.append(
            asyncio.create_task(
                StorageWatch(hub, parts.accounts).run(duties_stop), name="storage-watch"
            )
        )
        data_keys = parts.data_keys
        if data_keys is not None:
            duty = EncryptionDuty(
                data_keys, parts.dataplane, parts.accounts, settings.data_dir,
                router.any_worker_live,
            )  # fmt: skip
            leader_tasks.append(asyncio.create_task(duty.run(duties_stop), name="encryption"))
        leader_tasks.extend(in_process_duties(settings, settings.port, stop, parts.metrics))

    leading_task = asyncio.create_task(leadership.run(stop, on_gain), name="leadership")
    exit_code = 0
    try:
        # Listen on the public port only once the workers are connected here: until then
        # the kernel gives new connections to the other processes (a restarted process
        # would otherwise answer 503 for tenants on workers that have not dialled back yet).
        wait_until = time.monotonic() + READY_WAIT_S
        while len(hub.live()) < workers and time.monotonic() < wait_until:
            if stop.is_set():
                break
            await asyncio.sleep(0.05)
        serving = asyncio.create_task(server.serve(sockets=[public]))
        while not server.started:
            if serving.done():
                await serving
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.05)
        _freeze_startup_heap()  # as a single coordinator does
        ready = run_dir(settings) / f"coordinator-{index}.ready"
        ready.write_text(
            json.dumps({"pid": os.getpid(), "live": len(hub.live()), "hub_port": hub_port}),
            encoding="utf-8",
        )
        lost = asyncio.create_task(leadership.lost.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if leadership.lost.is_set() and not stop.is_set():
            log.error("placement leadership lost: this coordinator process stops")
            exit_code = LEADERLESS_EXIT
        lost.cancel()
        stopping.cancel()
    finally:
        stop.set()
        server.should_exit = True
        internal.should_exit = True
        await asyncio.gather(
            *([serving] if serving is not None else []), internal_serving, return_exceptions=True
        )
        duties_stop.set()
        await asyncio.gather(*duties, *leader_tasks, return_exceptions=True)
        if eventing is not None:
            await _finish(eventing, stop)
        for task in [*tasks, leading_task]:
            task.cancel()
        await asyncio.gather(*tasks, leading_task, return_exceptions=True)
        if router.follower is not None:
            await router.follower.leader.close()
        await hub.close()
        if membership is not None:
            with contextlib.suppress(Exception):  # its row goes stale by itself otherwise
                await asyncio.to_thread(membership.leave)
        await parts.accounts.close()
        if parts.dashboard is not None:
            parts.dashboard.close()
        leadership.release()
    return exit_code
