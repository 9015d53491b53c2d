"""Tiny HTTP/1.1 servers on loopback for the SDK transport tests: a listener that serves
each connection in a thread of its own, and the framing of one message."""

from __future__ import annotations

import socket
import threading


def read_message(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 message framed by Content-Length (all the API sends): (message, rest);
    None when the peer closes first."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None
        rest += data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


class LoopbackListener:
    """Accepts connections on 127.0.0.1 (a free port) and gives each to ``_serve`` in a
    thread of its own, counting them; ``close`` stops accepting."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.listener.close()
