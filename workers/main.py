"""The worker process: dial the coordinator, say hello, heartbeat, serve frames, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from workers.backup_store import LocalBackupStore
from workers.direct_socket import DirectBinary, write_now
from workers.fair_share import FairShare
from workers.faiss_runtime import one_openmp_thread
from workers.filter_pieces import KEY as FILTER_PIECES
from workers.fsync_stats import WAL_FSYNCS
from workers.full_collections import FullCollections
from workers.heap import keep_large_blocks_mapped
from workers.protocol import (
    DATA_OPS,
    PROTOCOL_VERSION,
    ErrorCode,
    Frame,
    Op,
    decode_frame,
    encode_frame,
    header_length,
    reply_error,
)
from workers.query_batch import DEFAULT_QUERY_BATCH
from workers.service import WorkerService
from workers.tenant_registry import TenantRegistry
from workers.work_budget import WorkBudget

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024 * 1024
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
MULTI_BACKOFF_MAX_S = 1.0  # several coordinator processes on this machine (loopback)
WELCOME_TIMEOUT_S = 10.0
MAX_CONCURRENT = 32  # control requests running at once (data ones: see FairShare)
MAX_QUEUED = 1024  # requests accepted but waiting; beyond this the worker answers BUSY
# The ownership lease lasts this many heartbeat intervals from the SENDING of an
# acknowledged heartbeat: shorter than the coordinator's 3 missed intervals, so a
# worker that was frozen (SIGSTOP, long GC, swap) stops writing before its
# tenants can be handed to another worker.
LEASE_INTERVALS = 2.5
# Frames whose JSON header is this large (a filter with tens of thousands of operands
# that came without pieces, a bulk write's ids and metadata) are decoded in a thread
# of their own, one at a time, so the event loop keeps serving small frames. Their
# arrays (vectors, filter pieces) cost nothing to decode: they are views of the frame.
BIG_HEADER_BYTES = 64 * 1024
# The GIL passes between threads this often (Python's default is 5 ms): a tenant's
# short request does not wait behind another tenant's long Python work for long.
# VP_WORKER_SWITCH_INTERVAL_MS overrides it.
SWITCH_INTERVAL_S = 0.001
# Micro-batching: one turn of the batcher answers at most this many full searches'
# worth of queued queries (and at least TURN_MIN_FRAMES frames) before it lets the
# event loop read the socket (cancels, heartbeats) again.
TURN_SEARCHES = 4
TURN_MIN_FRAMES = 64


class SharedLease:
    """The ownership lease of a worker dialled into several coordinator processes.

    Only acknowledgements from the coordinator that leads placement extend it (they
    carry ``leader: true``; a single coordinator's carry nothing and count too): the
    leader alone can hand a silent worker's tenants on, so its view is what must hold.
    """

    def __init__(self) -> None:
        self.until = 0.0

    def valid(self) -> bool:
        return time.monotonic() < self.until

    def extend(self, until: float) -> None:
        self.until = max(self.until, until)


class CoordinatorConnection(DirectBinary, ClientConnection):
    """The worker's socket to a coordinator: once the session serves, each whole binary
    frame is dispatched as it is parsed (workers.direct_socket)."""


class WorkerSession:
    """One WebSocket connection's life: hello, welcome, then heartbeats and requests."""

    def __init__(
        self,
        ws: ClientConnection,
        service: WorkerService,
        heartbeat_s: float,
        lease: SharedLease | None = None,
    ) -> None:
        self._ws = ws
        # frames read and written without websockets' queue, lock and tasks (a real socket)
        self._direct = isinstance(ws, DirectBinary)
        # Several coordinator processes: one lease for all sessions, watched by run_worker.
        self._shared = lease
        self._service = service
        self._heartbeat_s = heartbeat_s
        self._running = asyncio.Semaphore(MAX_CONCURRENT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._budgets: dict[int, WorkBudget] = {}  # by rid, of data requests not yet answered
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="decode")
        self._beat_seq = 0
        self._beats_sent: dict[int, float] = {}
        self._lease_until = 0.0
        # Queries waiting for the batcher's next turn (micro-batching): the turn is a
        # plain loop callback (no task, event or future to wake), scheduled once.
        self._pending: list[tuple[Frame, WorkBudget]] = []
        self._turn_handle: asyncio.Handle | None = None
        # Replies of a turn the socket could not take at once: no turn runs until
        # they are written (the coordinator not reading holds the queries back).
        self._sending: asyncio.Task[None] | None = None
        self._turns_stopped = False
        # The session's event loop, kept once known: asyncio.get_running_loop() is a
        # getpid system call on Python 3.11, and _want_turn runs once per query.
        self._loop: asyncio.AbstractEventLoop | None = None

    def lease_valid(self) -> bool:
        """True while an acknowledged heartbeat, sent recently enough, backs our ownership."""
        if self._shared is not None:
            return self._shared.valid()
        return time.monotonic() < self._lease_until

    def _on_heartbeat_ack(self, seq: object, leader: object = None) -> None:
        sent = self._beats_sent.pop(seq, None) if isinstance(seq, int) else None
        if sent is not None and self._shared is not None:
            if leader is not False:
                self._shared.extend(sent + LEASE_INTERVALS * self._heartbeat_s)
        elif sent is not None:
            self._lease_until = max(self._lease_until, sent + LEASE_INTERVALS * self._heartbeat_s)
        for old in [s for s in self._beats_sent if isinstance(seq, int) and s < seq]:
            del self._beats_sent[old]

    @property
    def queue_depth(self) -> int:
        """Requests accepted and not yet answered."""
        return len(self._tasks) + len(self._pending)

    async def handshake(self, worker_id: str, secret: str) -> bool:
        """Send HELLO and wait for WELCOME; False if the coordinator refused us."""
        hello = {
            "op": Op.HELLO.value,
            "rid": 0,
            "worker_id": worker_id,
            "secret": secret,
            "pid": os.getpid(),
            "protocol": PROTOCOL_VERSION,
            "held": self._service.held(),
            "released_on_expiry": self._service.released_on_expiry,
            FILTER_PIECES: True,  # a filter's long lists may come in pieces
        }
        sent_at = time.monotonic()
        await self._ws.send(encode_frame(hello))
        raw = await asyncio.wait_for(self._ws.recv(), WELCOME_TIMEOUT_S)
        try:
            frame = decode_frame(raw if isinstance(raw, bytes) else raw.encode())
        except ValueError:
            return False
        welcomed = frame.op == Op.WELCOME and frame.header.get("ok", True) is True
        if welcomed:
            # a fresh welcome is as good as an acknowledged heartbeat sent with the hello
            self._service.released_on_expiry = []
            self._lease_until = sent_at + LEASE_INTERVALS * self._heartbeat_s
            if self._shared is not None and frame.header.get("leader") is not False:
                self._shared.extend(self._lease_until)
        if not welcomed:
            log.error("coordinator refused this worker: %s", frame.header.get("error"))
        return welcomed

    async def serve(self, stop: asyncio.Event) -> None:
        """Heartbeat and answer requests until the socket closes or ``stop`` is set."""
        beats = asyncio.create_task(self._heartbeats())
        watching = asyncio.create_task(
            self._watch_lease() if self._shared is None else asyncio.Event().wait()
        )
        if isinstance(self._ws, DirectBinary):
            self._ws.on_binary = self._on_binary
        receiving = asyncio.create_task(self._receive())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            receiving.cancel()
            stopping.cancel()
            await self._stop_turns()
            self._decoder.shutdown(wait=False, cancel_futures=True)
            # Nobody will read the replies of a closed socket: stop their work early.
            for budget in self._budgets.values():
                budget.cancel()
            # In-flight requests finish (and answer, if the socket is still up) first.
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            beats.cancel()
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await beats
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await receiving

    async def _heartbeats(self) -> None:
        while True:
            load = {
                "tenants": self._service.tenant_count,
                "memory_bytes": self._service.registry.memory_bytes,
                "queue_depth": self.queue_depth,
                "tenant_threads": self._service.fair_share.per_tenant,
                **WAL_FSYNCS.report(),
            }
            held = self._service.held()
            # Thread-seconds per tenant, cumulative: the rebalancer's measure of cost.
            busy = self._service.fair_share.busy_seconds(held)
            space = await asyncio.to_thread(self._service.space.report)
            self._beat_seq += 1
            self._beats_sent[self._beat_seq] = time.monotonic()
            beat = {
                "op": Op.HEARTBEAT.value,
                "rid": 0,
                "seq": self._beat_seq,
                "load": load,
                "held": held,
                "busy": {tenant: round(seconds, 4) for tenant, seconds in busy.items()},
                "space": space,
            }
            await self._ws.send(encode_frame(beat))
            await asyncio.sleep(self._heartbeat_s)

    async def _watch_lease(self) -> None:
        """When the lease runs out, give up every tenant (file locks too) before anything else.

        The coordinator may already have handed them to another worker, which can
        only lock them once we let go; a worker that kept them would block them for ever.
        """
        while True:
            wait = self._lease_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait + 0.01)
                continue
            held = self._service.held()
            if held:
                log.warning(
                    "ownership lease expired: releasing %d tenants: %s",
                    len(held),
                    ", ".join(sorted(held)[:20]),
                )
                await self._service.release_all()
                self._service.released_on_expiry.extend(sorted(held))
            await asyncio.sleep(self._heartbeat_s / 4)

    async def _receive(self) -> None:
        """Read the socket until it closes: frames the socket did not hand to
        ``_on_binary`` as they were parsed (all of them on a socket without the hook)."""
        async for raw in self._ws:
            if not isinstance(raw, bytes):
                log.warning("ignoring a text frame from the coordinator")
                continue
            self._on_binary(raw)

    def _on_binary(self, raw: bytes) -> None:
        """Act on one binary frame as it arrives, in arrival order."""
        if header_length(raw) >= BIG_HEADER_BYTES:
            task = asyncio.create_task(self._decode_and_answer(raw))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            frame = decode_frame(raw)
        except ValueError as exc:  # ProtocolError, or a shape decode_frame let through
            log.warning("ignoring a malformed frame: %s", exc)
            return
        self._dispatch(frame)

    async def _decode_and_answer(self, raw: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            frame = await loop.run_in_executor(self._decoder, decode_frame, raw)
        except ValueError as exc:
            log.warning("ignoring a malformed frame: %s", exc)
            return
        self._dispatch(frame)

    def _dispatch(self, frame: Frame) -> None:
        """Act on one decoded frame: an acknowledgement, a cancel, or a request to answer."""
        if frame.op == Op.HEARTBEAT_ACK:
            self._on_heartbeat_ack(frame.header.get("seq"), frame.header.get("leader"))
            return
        if frame.op == Op.CANCEL:
            cancelled = frame.header.get("cancel")
            budget = self._budgets.get(cancelled) if isinstance(cancelled, int) else None
            if budget is not None:
                budget.cancel()
            return
        if frame.op == Op.QUERY and self.lease_valid() and len(self._pending) < MAX_QUEUED:
            # Answered by the batcher with the other queries that have arrived meanwhile
            budget = WorkBudget.from_header(frame.header)
            self._budgets[frame.rid] = budget
            self._pending.append((frame, budget))
            self._want_turn()
            return
        if len(self._tasks) >= MAX_QUEUED:
            rid = frame.header.get("rid")
            rid = rid if isinstance(rid, int) else 0
            busy = reply_error(rid, ErrorCode.BUSY, "worker is busy; try again")
            task = asyncio.create_task(self._send_all([encode_frame(busy)]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._spawn(frame)

    def _want_turn(self) -> None:
        """Schedule the batcher's next turn, unless one is scheduled or replies are
        still being written."""
        if self._turn_handle is None and self._sending is None and not self._turns_stopped:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self._turn_handle = loop.call_soon(self._turn)

    def _turn(self) -> None:
        """Answer the queued queries together: each turn takes every query that arrived
        while the event loop was busy (it never waits for more), so concurrent queries
        to one collection share a FAISS search (micro-batching, workers.query_batch).

        A loop callback: it runs after the read callbacks that queued the queries, and
        the next turn is scheduled behind the socket's next read.
        """
        self._turn_handle = None
        # A turn holds the event loop for a few searches at most: what is left
        # waits for the next turn, after the loop has read the socket again.
        turn = max(TURN_SEARCHES * self._service.query_batch, TURN_MIN_FRAMES)
        batch, self._pending = self._pending[:turn], self._pending[turn:]
        if not batch:
            return
        try:
            if not self.lease_valid():  # the usual way refuses them (lease expired)
                for frame, budget in batch:
                    self._spawn(frame, budget)
                return
            try:
                replies = self._service.answer_now(batch)
            except Exception:  # a defect: the usual way answers them, the batcher lives on
                log.exception("batched queries failed; answering them one by one")
                replies = [None] * len(batch)
            out: list[bytes] = []
            for (frame, budget), answered in zip(batch, replies, strict=True):
                if answered is None:  # the usual way: its own task, maybe a thread
                    self._spawn(frame, budget)
                    continue
                if self._budgets.get(frame.rid) is budget:
                    del self._budgets[frame.rid]
                out.append(encode_frame(*answered))
            if out and not self._written_now(out):
                self._sending = asyncio.create_task(self._send_then_turn(out))
        finally:
            if self._pending:
                self._want_turn()

    def _written_now(self, frames: list[bytes]) -> bool:
        """Whether ``frames`` went out at once (True too when the write failed: the
        connection is then closed and they are lost, logged)."""
        if not self._direct:
            return False
        try:
            return write_now(self._ws, frames)
        except Exception as exc:
            log.warning("%d replies lost: connection closed (%s)", len(frames), exc)
            return True

    async def _send_then_turn(self, frames: list[bytes]) -> None:
        try:
            await self._send_all(frames)
        finally:
            self._sending = None
            if self._pending:
                self._want_turn()

    async def _stop_turns(self) -> None:
        """No more turns: the one scheduled is dropped, replies being written are given
        up, and the queries not taken yet go the usual way, like the others."""
        self._turns_stopped = True
        if self._turn_handle is not None:
            self._turn_handle.cancel()
            self._turn_handle = None
        sending = self._sending
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sending
        batch, self._pending = self._pending, []
        for frame, budget in batch:
            self._spawn(frame, budget)

    async def _send_all(self, frames: list[bytes]) -> None:
        """Send ``frames``: in one write when the socket takes them at once, else one by
        one through ``send``; on a closed socket they are lost (logged)."""
        try:
            if self._direct and write_now(self._ws, frames):
                return
            for data in frames:
                await self._ws.send(data)
        except Exception as exc:  # ConnectionClosed, or the failed write that closed it
            log.warning("%d replies lost: connection closed (%s)", len(frames), exc)

    def _spawn(self, frame: Frame, budget: WorkBudget | None = None) -> None:
        task = asyncio.create_task(self._answer(frame, budget))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, frame: Frame, budget: WorkBudget | None = None) -> None:
        budget = budget or WorkBudget.from_header(frame.header)
        if frame.op in DATA_OPS:
            self._budgets[frame.rid] = budget
        try:
            await self._answer_within(frame, budget)
        finally:
            if self._budgets.get(frame.rid) is budget:
                del self._budgets[frame.rid]

    async def _answer_within(self, frame: Frame, budget: WorkBudget) -> None:
        # Data requests wait in the service's fair share (per-tenant threads and queue):
        # one shared semaphore here would let one tenant's backlog hold every place.
        limit = contextlib.nullcontext() if frame.op in DATA_OPS else self._running
        async with limit:
            if (frame.op in DATA_OPS or frame.op == Op.ASSIGN) and not self.lease_valid():
                # Frames that queued up while we were frozen must not write:
                # the coordinator may already have handed the tenant on.
                log.warning("refusing %s for %s: ownership lease expired", frame.op, frame.rid)
                reply = reply_error(frame.rid, ErrorCode.NOT_OWNER, "ownership lease expired")
                arrays: dict[str, np.ndarray] = {}
            else:
                reply, arrays = await self._service.handle(frame, budget)
        try:
            await self._ws.send(encode_frame(reply, arrays))
        except ConnectionClosed:
            log.warning("reply to request %s lost: connection closed", reply.get("rid"))


async def run_worker(
    coordinator_url: str,
    secret: str,
    worker_id: str,
    hot_dir: Path,
    wal_compact_bytes: int,
    heartbeat_interval_s: float,
    stop: asyncio.Event | None = None,
    memory_budget_mb: int = 1024,
    cold_dir: Path | None = None,
    min_free_bytes: int | None = None,
    liveness_file: Path | None = None,
    backup_dir: Path | None = None,
    fair_share: FairShare | None = None,
    switch_interval_s: float = SWITCH_INTERVAL_S,
    query_batch: int = DEFAULT_QUERY_BATCH,
) -> None:
    """Serve the coordinator at ``coordinator_url`` until ``stop`` is set, reconnecting forever.

    ``memory_budget_mb`` bounds the memory of loaded tenants (VP_WORKER_MEMORY_MB); past
    it, idle tenants are unloaded, least recently used first. ``min_free_bytes`` is the
    free-space floor of the hot store below which growing writes are refused.
    ``liveness_file`` (if given) is touched every heartbeat interval, connected or not,
    for a container liveness check (deploy/healthcheck.py alive). ``fair_share`` holds the
    request threads and each tenant's share of them (VP_WORKER_THREADS,
    VP_WORKER_TENANT_THREADS, VP_WORKER_TENANT_QUEUE); ``switch_interval_s`` is the GIL's.
    ``query_batch`` bounds the queries one FAISS search answers together
    (VP_WORKER_QUERY_BATCH, see workers.query_batch).
    """
    one_openmp_thread()  # FAISS itself loads with the first collection
    keep_large_blocks_mapped()
    sys.setswitchinterval(switch_interval_s)
    stop = stop or asyncio.Event()
    service = WorkerService(
        TenantRegistry(hot_dir, wal_compact_bytes),
        memory_budget_mb * 1024 * 1024,
        cold_dir=cold_dir,
        min_free_bytes=min_free_bytes,
        backups=LocalBackupStore(backup_dir) if backup_dir is not None else None,
        fair_share=fair_share,
        query_batch=query_batch,
    )
    liveness = None
    if liveness_file is not None:
        liveness = asyncio.create_task(touch_liveness(liveness_file, heartbeat_interval_s))
    # The oldest generation is collected while no reads run (workers/full_collections.py).
    full_collections = FullCollections(service.registry.options.maintenance.activity.quiet)
    collector = asyncio.create_task(full_collections.run(stop))
    urls = [u.strip() for u in coordinator_url.split(",") if u.strip()]
    if len(urls) > 1:
        await _serve_several(urls, secret, worker_id, service, heartbeat_interval_s, stop)
    backoff = BACKOFF_FIRST_S
    while not stop.is_set():
        try:
            async with connect(
                coordinator_url,
                compression=None,
                max_size=MAX_FRAME_BYTES,
                open_timeout=10,
                create_connection=CoordinatorConnection,
            ) as ws:
                session = WorkerSession(ws, service, heartbeat_interval_s)
                if await session.handshake(worker_id, secret):
                    log.info("worker %s connected to %s", worker_id, coordinator_url)
                    backoff = BACKOFF_FIRST_S
                    await session.serve(stop)
        except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
            log.warning("coordinator connection failed: %s", exc)
        except Exception:
            log.exception("worker session failed; reconnecting")
        finally:
            # The coordinator re-assigns tenants after we reconnect; hold no locks meanwhile.
            await service.release_all()
        if stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)
    for task in (liveness, collector):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    log.info("worker %s stopped", worker_id)


async def _serve_several(
    urls: list[str],
    secret: str,
    worker_id: str,
    service: WorkerService,
    heartbeat_s: float,
    stop: asyncio.Event,
) -> None:
    """Dial every coordinator process (VP_COORDINATOR_URL lists them, comma-separated).

    Each serves its own requests; the one that leads placement sends ASSIGN and
    RELEASE, and its acknowledged heartbeats back the lease shared by all sessions. A
    session that ends releases nothing (the others still route here): when the leader's
    acknowledgements stop for the lease's length, every tenant is given up, as with one.
    """
    lease = SharedLease()

    async def dial(url: str) -> None:
        backoff = BACKOFF_FIRST_S
        while not stop.is_set():
            try:
                async with connect(
                    url,
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                    open_timeout=10,
                    create_connection=CoordinatorConnection,
                ) as ws:
                    session = WorkerSession(ws, service, heartbeat_s, lease)
                    if await session.handshake(worker_id, secret):
                        log.info("worker %s connected to %s", worker_id, url)
                        backoff = BACKOFF_FIRST_S
                        await session.serve(stop)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                log.warning("coordinator connection to %s failed: %s", url, exc)
            except Exception:
                log.exception("worker session with %s failed; reconnecting", url)
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            # a restarted coordinator process serves again once every worker is back
            backoff = min(backoff * 2, MULTI_BACKOFF_MAX_S)

    async def watch() -> None:
        while not stop.is_set():
            wait = lease.until - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait + 0.01)
                continue
            held = service.held()
            if held:
                log.warning(
                    "ownership lease expired: releasing %d tenants: %s",
                    len(held),
                    ", ".join(sorted(held)[:20]),
                )
                await service.release_all()
                service.released_on_expiry.extend(sorted(held))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), heartbeat_s / 4)

    tasks = [asyncio.create_task(dial(url)) for url in urls]
    tasks.append(asyncio.create_task(watch()))
    try:
        await stop.wait()
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.release_all()


async def touch_liveness(path: Path, interval_s: float) -> None:
    """Keep ``path`` (holding our pid) fresh while this event loop runs.

    A frozen process (SIGSTOP, a hung disk, a blocked loop) stops touching it; the
    liveness check then kills the process, faster than the lease expires.
    """
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(str(os.getpid()), encoding="ascii")
    os.replace(temp, path)
    while True:
        with contextlib.suppress(OSError):
            os.utime(path)
        await asyncio.sleep(interval_s)
