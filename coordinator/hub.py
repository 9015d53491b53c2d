"""The worker hub: the WebSocket server that workers dial into.

A worker's first frame must be HELLO carrying the shared worker secret; a
socket without it is closed. After WELCOME the hub reads replies (resolving
the pending request futures) and heartbeats (feeding the health view).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from coordinator.filter_pieces import joined_frame
from workers.direct_socket import DirectBinary, writable_now, write_now
from workers.filter_pieces import KEY as PIECES_KEY
from workers.protocol import (
    PROTOCOL_VERSION,
    Frame,
    Op,
    ProtocolError,
    decode_frame,
    encode_frame,
)

log = logging.getLogger("vectorpanda.hub")

_QUERY = Op.QUERY.value
HELLO_TIMEOUT_S = 5.0
MAX_FRAME_BYTES = 512 * 1024 * 1024


class WorkerGone(Exception):
    """The worker's socket closed before it replied."""


class WorkerConnection(DirectBinary, ServerConnection):
    """A worker's socket: once ``on_binary`` is set, each whole binary message goes to it
    as it is parsed (workers.direct_socket); the hub sets it before it welcomes the
    worker, which sends nothing before that but HELLO."""


def send_now(socket: ServerConnection, frame: bytes) -> bool:
    """Write one binary message at once (no task switch, no context managers); False
    when it must go through ``send`` instead."""
    try:
        return write_now(socket, (frame,))
    except Exception as exc:  # as Connection.send: the connection is finished
        raise WorkerGone(str(exc)) from exc


@dataclass
class WorkerLink:
    """One connected worker: its socket, pending requests and last heartbeat."""

    worker_id: str
    pid: int
    socket: ServerConnection
    connected_at: float = field(default_factory=time.monotonic)
    last_heartbeat: float = field(default_factory=time.monotonic)
    load: dict[str, Any] = field(default_factory=dict)
    # free space per store ("hot", "cold"): {free_bytes, total_bytes, min_free_bytes}
    space: dict[str, dict[str, int]] = field(default_factory=dict)
    pending: dict[int, asyncio.Future[Frame]] = field(default_factory=dict)
    alive: bool = True
    # Tenant -> epoch the worker says it owns (and has locked), from its latest
    # heartbeat; None until the first report.
    held: dict[str, int] | None = None
    # Tenant -> thread-seconds its requests have held the worker's threads (cumulative,
    # from the latest heartbeat; the rebalancer's measure of cost); None until reported.
    busy: dict[str, float] | None = None
    busy_at: float = 0.0
    # a write of the queries queued in this step of the loop is scheduled (``_queue``)
    flush_due: bool = False
    # the worker takes a filter's long lists in pieces (its hello says so)
    filter_pieces: bool = False

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.last_heartbeat

    async def request(
        self, rid: int, header: dict[str, Any], arrays: dict[str, np.ndarray] | None
    ) -> asyncio.Future[Frame]:
        """Send one request frame; the returned future resolves with the reply."""
        if not self.alive:
            raise WorkerGone(self.worker_id)
        # The socket's loop, not asyncio.get_running_loop(): on Python 3.11 that is a
        # getpid system call each time.
        fut: asyncio.Future[Frame] = self.socket.loop.create_future()
        self.pending[rid] = fut
        if PIECES_KEY in header and not self.filter_pieces and arrays is not None:
            header, arrays = joined_frame(header, arrays)  # a worker from before pieces
        frame = encode_frame({**header, "rid": rid}, arrays)
        # Queries sent while others are in flight go out together at the end of this
        # step of the loop (the worker then also reads them together); alone, at once.
        if len(self.pending) > 1 and header.get("op") == _QUERY and self._queue(frame):
            return fut
        try:
            if not send_now(self.socket, frame):
                await self.socket.send(frame)
        except (ConnectionClosed, WorkerGone) as exc:
            self.pending.pop(rid, None)
            raise WorkerGone(self.worker_id) from exc
        return fut

    def _queue(self, frame: bytes) -> bool:
        """Add a query frame to the socket's outgoing data, written once this step of the
        loop is over with every other one queued in it (False: not open, ``send`` it).

        A query is read-only: if that write fails, the socket is aborted and the query's
        future fails with WorkerGone, after which the router asks the new owner."""
        socket = self.socket
        if not writable_now(socket):
            return False
        socket.protocol.send_binary(frame)
        if not self.flush_due:
            self.flush_due = True
            socket.loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """Write the queued frames in one system call."""
        self.flush_due = False
        socket = self.socket
        try:
            socket.send_data()
        except Exception as exc:
            socket.set_connection_exc(exc)
            socket.transport.abort()

    def cancel(self, rid: int) -> None:
        """Tell the worker nobody waits for request ``rid`` any more (best effort)."""
        self.pending.pop(rid, None)
        if not self.alive:
            return
        frame = encode_frame({"op": Op.CANCEL.value, "rid": 0, "cancel": rid})
        task = asyncio.ensure_future(self.socket.send(frame))
        task.add_done_callback(_ignore_closed)

    def fail_pending(self) -> None:
        self.alive = False
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(WorkerGone(self.worker_id))
        self.pending.clear()


WorkerListener = Callable[[WorkerLink], Awaitable[None]]
HeldListener = Callable[[WorkerLink], None]


def _busy(value: object) -> dict[str, float] | None:
    """A worker's ``busy`` report (tenant -> seconds >= 0), or None when missing or malformed."""
    if not isinstance(value, dict):
        return None
    return {
        str(t): float(s)
        for t, s in value.items()
        if isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s < float("inf")
    }


def _held(value: object) -> dict[str, int] | None:
    """A worker's ``held`` report, or None when it is missing or malformed."""
    if not isinstance(value, dict):
        return None
    return {str(t): e for t, e in value.items() if isinstance(e, int) and not isinstance(e, bool)}


# Makes sure a silent worker's process is dead; True if it was fenced (killed and reaped).
Fencer = Callable[[WorkerLink], Awaitable[bool]]


def _ignore_closed(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("heartbeat ack not sent: %s", task.exception())


@dataclass(frozen=True, slots=True)
class DepartedWorker:
    """A worker that left, kept for the operators' view."""

    worker_id: str
    pid: int
    why: str
    at: float


class WorkerHub:
    """Accepts worker connections and keeps the set of live links."""

    def __init__(
        self,
        worker_secret: str,
        fencer: Fencer | None = None,
        leading: Callable[[], bool] | None = None,
    ) -> None:
        self._secret = worker_secret.encode()
        self._links: dict[str, WorkerLink] = {}
        self.departed: dict[str, DepartedWorker] = {}
        self.losses = 0
        self.fences = 0
        # Given by whoever supervises the worker processes (``vectorpanda up``); a process of
        # a coordinator group turns it on only while it leads (vectorpanda/server/group.py).
        self.fencer: Fencer | None = fencer
        self._rids = itertools.count(1)
        self._server: Server | None = None
        self.on_join: list[WorkerListener] = []
        self.on_leave: list[WorkerListener] = []
        # Called on the event loop with every heartbeat that reports what the worker holds.
        self.on_held: list[HeldListener] = []
        self.changed = asyncio.Event()
        # Several coordinator processes (coordinator/leader.py): whether this one leads,
        # told to workers in WELCOME and every heartbeat ack (their lease follows the
        # leader's). None: the only coordinator, nothing to tell.
        self.leading: Callable[[], bool] | None = leading

    def _role(self) -> dict[str, Any]:
        return {} if self.leading is None else {"leader": self.leading()}

    @property
    def links(self) -> dict[str, WorkerLink]:
        return self._links

    def live(self) -> list[WorkerLink]:
        return [link for link in self._links.values() if link.alive]

    def next_rid(self) -> int:
        return next(self._rids)

    async def start(self, host: str, port: int) -> int:
        """Listen for workers; return the bound port (useful with port 0)."""
        self._server = await serve(
            self._handle,
            host,
            port,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            create_connection=WorkerConnection,
        )
        sockets = list(self._server.sockets)
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in list(self._links.values()):
            link.fail_pending()

    async def _authenticate(self, socket: ServerConnection) -> Frame | None:
        try:
            raw = await asyncio.wait_for(socket.recv(), HELLO_TIMEOUT_S)
            frame = decode_frame(raw if isinstance(raw, bytes) else raw.encode())
        except (TimeoutError, ProtocolError, ConnectionClosed):
            return None
        secret = str(frame.header.get("secret", "")).encode()
        if frame.op != Op.HELLO or not hmac.compare_digest(secret, self._secret):
            return None
        if frame.header.get("protocol") != PROTOCOL_VERSION:
            return None
        return frame

    async def _handle(self, socket: ServerConnection) -> None:
        hello = await self._authenticate(socket)
        if hello is None:
            log.warning("worker socket refused: missing or wrong hello/secret")
            await socket.close(code=4401, reason="unauthorized")
            return
        worker_id = str(hello.header.get("worker_id") or f"w{self.next_rid()}")
        previous = self._links.get(worker_id)
        if previous is not None and previous.alive:
            await self._drop(previous, "replaced by a new connection")
        link = WorkerLink(worker_id=worker_id, pid=int(hello.header.get("pid", 0)), socket=socket)
        link.held = _held(hello.header.get("held"))
        link.filter_pieces = hello.header.get(PIECES_KEY) is True
        released = hello.header.get("released_on_expiry")
        if isinstance(released, list) and released:
            log.warning(
                "worker %s released %d tenants when its ownership lease expired: %s",
                worker_id,
                len(released),
                ", ".join(str(t) for t in released[:20]),
            )
        self._links[worker_id] = link
        self.departed.pop(worker_id, None)
        if isinstance(socket, WorkerConnection):
            socket.on_binary = lambda raw: self._dispatch(link, raw)
        await socket.send(
            encode_frame({"op": Op.WELCOME.value, "rid": hello.rid, "ok": True, **self._role()})
        )
        log.info("worker %s joined (pid %s)", worker_id, link.pid)
        for listener in self.on_join:
            await listener(link)
        self.changed.set()
        try:
            async for raw in socket:
                if isinstance(raw, str):
                    continue
                self._dispatch(link, raw)
        except ConnectionClosed:
            pass
        finally:
            await self._drop(link, "socket closed")

    def _dispatch(self, link: WorkerLink, raw: bytes) -> None:
        try:
            frame = decode_frame(raw)
        except ProtocolError as exc:
            log.error("worker %s sent a malformed frame: %s", link.worker_id, exc)
            return
        if frame.op == Op.HEARTBEAT:
            link.last_heartbeat = time.monotonic()
            load = frame.header.get("load")
            if isinstance(load, dict):
                link.load = load
            busy = _busy(frame.header.get("busy"))
            if busy is not None:
                link.busy, link.busy_at = busy, link.last_heartbeat
            held = _held(frame.header.get("held"))
            if held is not None and link.alive:
                link.held = held
                for listener in self.on_held:
                    listener(link)
            space = frame.header.get("space")
            if isinstance(space, dict):
                link.space = _space_report(space)
            seq = frame.header.get("seq")
            if isinstance(seq, int) and link.alive:
                ack = encode_frame(
                    {"op": Op.HEARTBEAT_ACK.value, "rid": 0, "seq": seq, **self._role()}
                )
                task = asyncio.ensure_future(link.socket.send(ack))
                task.add_done_callback(_ignore_closed)
            return
        fut = link.pending.pop(frame.rid, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    async def _drop(self, link: WorkerLink, why: str) -> None:
        if not link.alive:
            return
        link.fail_pending()
        if self._links.get(link.worker_id) is link:
            del self._links[link.worker_id]
        self.departed[link.worker_id] = DepartedWorker(link.worker_id, link.pid, why, time.time())
        self.losses += 1
        log.warning("worker %s left: %s", link.worker_id, why)
        for listener in self.on_leave:
            await listener(link)
        self.changed.set()
        # Closing waits for the peer's close frame; a frozen worker never sends
        # one, so the close runs in the background and ends in a TCP abort.
        closing = asyncio.ensure_future(link.socket.close())
        closing.add_done_callback(_ignore_closed)

    async def mark_down(self, link: WorkerLink, why: str) -> None:
        """Declare a worker down (e.g. missed heartbeats) and close its socket.

        A silent worker may only be frozen: it still holds its tenants' file
        locks and could wake up. The fencer (if any) kills it first, so the
        tenants can be loaded elsewhere as soon as the leave listeners hand
        them on. In a coordinator group only the leader fences.
        """
        leads = self.leading is None or self.leading()
        if self.fencer is not None and link.alive and leads:
            try:
                fenced = await self.fencer(link)
            except Exception:  # a failed fence must not keep the worker counted live
                log.exception("fencing worker %s failed", link.worker_id)
                fenced = False
            if fenced:
                self.fences += 1
                why = f"{why}; fenced (process {link.pid} killed)"
        await self._drop(link, why)


def _space_report(space: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The numeric part of a heartbeat's space report, per store."""
    report: dict[str, dict[str, int]] = {}
    for store, figures in space.items():
        if isinstance(store, str) and isinstance(figures, dict):
            report[store] = {
                k: v
                for k, v in figures.items()
                if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            }
    return report
