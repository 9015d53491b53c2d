"""Binary WebSocket messages without websockets' per-message queue, task and lock.

Used on both ends of the coordinator-worker socket (coordinator/hub.py, workers/main.py).
``Connection.recv`` costs a queue, a future and a step of the reading task per message,
and ``Connection.send`` a lock and two context managers; for the small binary frames of
the query path that was a measurable share of each process's CPU per query. Here a
whole binary message goes to a callback as it is parsed, and messages are written at
once, several in one system call (``DirectBinary.send_data``), each framed here
(``binary_frame``): websockets' ``Frame.serialize`` draws every client frame's mask with
its own ``getrandom`` system call, where the worker's end takes its masks from one
``os.urandom`` read per 1,024 frames.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode, apply_mask
from websockets.protocol import CLIENT, SEND_EOF, State

log = logging.getLogger("vectorpanda.socket")


class DirectBinary(Connection):
    """A connection whose whole binary messages go to ``on_binary`` once it is set.

    Text and fragmented messages (neither end sends them) still go to the receive
    queue, and the reading task still ends when the socket closes.
    """

    on_binary: Callable[[bytes], None] | None = None
    # Masking keys of the client's end (binary_frame): one read, used 4 bytes at a time
    _masks: bytes = b""
    _mask_at: int = 0

    def process_event(self, event: Any) -> None:
        on_binary = self.on_binary
        if (
            on_binary is not None
            and type(event) is WireFrame
            and event.opcode is Opcode.BINARY
            and event.fin
        ):
            data = event.data
            try:
                on_binary(data if type(data) is bytes else bytes(data))
            except Exception:  # a defect here must not end the socket's reading
                log.exception("dispatching a frame failed")
            return
        super().process_event(event)

    def send_data(self) -> None:
        """Write what the protocol has queued, several messages in one system call.

        websockets' own ``send_data`` hands each queued message to the transport on its
        own, and the event loop writes each one at once (uvloop, like asyncio, tries the
        write whenever nothing is buffered): a batch of 8 replies was 8 system calls,
        and the reader at the other end woken for each. ``writelines`` buffers them,
        then writes once. A queued end of stream (a failed connection's, behind its
        close frame) goes websockets' own way.
        """
        protocol = self.protocol
        # ``writes`` is the protocol's outgoing queue (websockets 17, pinned), what
        # ``data_to_send`` returns and empties; tests/unit/workers/test_direct_socket.py
        # fails if that changes
        if len(protocol.writes) > 1 and SEND_EOF not in protocol.writes:
            self.transport.writelines(protocol.data_to_send())
        else:
            super().send_data()


# Masking keys read from the kernel at once: os.urandom, as websockets' own keys
# (secrets.token_bytes), 4 bytes a frame (RFC 6455 5.3).
MASK_BYTES = 4
MASKS_PER_READ = 1024
_FIN_BINARY = 0x80 | Opcode.BINARY
_MASKED = 0x80
_SHORT, _MEDIUM, _LONG = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")


def _head(length: int, mask_bit: int) -> bytes:
    if length < 126:
        return _SHORT.pack(_FIN_BINARY, mask_bit | length)
    if length < 65536:
        return _MEDIUM.pack(_FIN_BINARY, mask_bit | 126, length)
    return _LONG.pack(_FIN_BINARY, mask_bit | 127, length)


def binary_frame(socket: DirectBinary, message: bytes) -> bytes:
    """``message`` as one final binary frame on the wire, exactly as websockets'
    ``Frame.serialize`` writes it for this end (masked on the client's end, with a key
    from the socket's pool of random bytes; no extensions)."""
    if socket.protocol.side is not CLIENT:
        return _head(len(message), 0) + message
    at = socket._mask_at
    if at >= len(socket._masks):
        socket._masks, at = os.urandom(MASK_BYTES * MASKS_PER_READ), 0
    mask = socket._masks[at : at + MASK_BYTES]
    socket._mask_at = at + MASK_BYTES
    return b"".join((_head(len(message), _MASKED), mask, apply_mask(message, mask)))


def writable_now(socket: Connection) -> bool:
    """Whether a message may be written without ``send``: the socket is open, no
    fragmented message is being sent and its buffer is not full."""
    return (
        socket.protocol.state is State.OPEN
        and socket.send_in_progress is None
        and not socket.paused
    )


def write_now(socket: Connection, messages: Sequence[bytes]) -> bool:
    """Write binary ``messages`` at once, in one system call; False (nothing written)
    when they must go through ``send`` instead. A failed write finishes the connection
    (as ``send`` does) and raises."""
    if not writable_now(socket):
        return False
    protocol = socket.protocol
    if (
        isinstance(socket, DirectBinary)
        and not protocol.extensions
        and not protocol.debug
        and not protocol.expect_continuation_frame
    ):
        # what send_binary checks and queues, the frame made here (binary_frame)
        protocol.writes.extend(binary_frame(socket, message) for message in messages)
    else:
        for message in messages:
            protocol.send_binary(message)
    try:
        socket.send_data()
    except Exception as exc:
        socket.set_connection_exc(exc)
        socket.transport.abort()
        raise
    return True
