"""A lean HTTP/1.1 keep-alive transport for the blocking client.

httpx builds a ``Request`` and a ``Response`` (URL parsing, header models, body
streams) for every exchange, and its default transport (httpcore + h11) writes a
request's head and body with two ``send`` calls; together that was about 0.4 ms of
the client's CPU per query, several times the query's own work on the client. So the
blocking client, unless given a ``transport=``, talks through a ``Pool``: plain
sockets kept alive to one origin, each request's head and body written with one
``sendall``, answers read by ``Content-Length`` (or chunked, or until the server
closes) straight into bytes. Failures are raised as httpx's own exceptions, so the
client's retry rules (``base.NOT_SENT``: only a connection never made is "not
sent") hold unchanged.

``LeanTransport`` is the same connection handling behind httpx's transport
interface, for code that wants an ``httpx.Client``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import sys
import threading
from urllib.parse import urlsplit

import httpx

MAX_IDLE_PER_HOST = 32
_KERNEL_TIMEOUTS = sys.platform == "linux"
_TIMEVAL = struct.Struct("@ll")  # struct timeval
_MAX_HEAD = 64 * 1024
_RECV = 256 * 1024

Headers = list[tuple[str, str]]  # names in lower case


class _Connection:
    __slots__ = ("buffer", "kernel_timeouts", "sock", "timeouts")

    def __init__(self, sock: socket.socket, kernel_timeouts: bool) -> None:
        self.sock = sock
        self.buffer = b""
        # Plain TCP on Linux: the kernel enforces the timeouts (SO_SNDTIMEO/SO_RCVTIMEO) on
        # a blocking socket; Python's own timeouts cost a poll() before every send and recv.
        self.kernel_timeouts = kernel_timeouts
        self.timeouts: tuple[float | None, float | None] | None = None

    def set_timeouts(self, write: float | None, read: float | None) -> None:
        """Timeouts of the next send and recv calls (None: wait forever)."""
        if not self.kernel_timeouts:
            if self.timeouts != (write, write):
                self.sock.settimeout(write)
                self.timeouts = (write, write)
            return
        if self.timeouts != (write, read):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(write))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(read))
            self.timeouts = (write, read)

    def reading(self, read: float | None) -> None:
        """Switch a Python-timeout socket to the read timeout (the kernel's already has it)."""
        if not self.kernel_timeouts and self.timeouts != (read, read):
            self.sock.settimeout(read)
            self.timeouts = (read, read)

    def stale(self) -> bool:
        """Readable while idle: the server closed it (or sent what nobody asked for)."""
        if self.buffer:
            return True
        try:
            readable, _, _ = select.select((self.sock,), (), (), 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _timeval(seconds: float | None) -> bytes:
    if seconds is None:
        return _TIMEVAL.pack(0, 0)  # the kernel's "no timeout"
    whole = int(seconds)
    micro = int((seconds - whole) * 1e6)
    return _TIMEVAL.pack(whole, micro if whole or micro else 1)


def _ssl_context(verify: str | bool) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context()
    return context


class _Sockets:
    """Idle keep-alive connections per (scheme, host, port), shared by threads."""

    def __init__(self, verify: str | bool) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str, int]) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.stale():
                    return conn
                conn.close()
        return None

    def give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append(conn)
                return
        conn.close()

    def connect(self, key: tuple[str, str, int], timeout: float | None) -> _Connection:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = _ssl_context(self._verify)
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
                return _Connection(sock, kernel_timeouts=False)
            if not _KERNEL_TIMEOUTS:
                return _Connection(sock, kernel_timeouts=False)
            sock.settimeout(None)  # blocking; the kernel times out send and recv
            return _Connection(sock, kernel_timeouts=True)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc

    def exchange(
        self,
        key: tuple[str, str, int],
        payload: bytes,
        head_only: bool,
        timeouts: tuple[float | None, float | None, float | None],
    ) -> tuple[int, Headers, bytes]:
        """Send ``payload`` (a whole request) and read the answer: status, headers, body.

        ``timeouts`` are (connect, write, read) seconds. Raises httpx's exceptions.
        """
        connect, write, read = timeouts
        conn = self.take(key) or self.connect(key, connect)
        broke: OSError | None = None
        try:
            conn.set_timeouts(write, read)
            try:
                conn.sock.sendall(payload)
            except (TimeoutError, BlockingIOError) as exc:
                raise httpx.WriteTimeout(str(exc)) from exc
            except OSError as exc:
                # A server may answer (a 413, say) and close before reading the whole
                # body: read that answer if it is there, as httpcore does.
                broke = exc
            conn.reading(read)
            try:
                status, headers, content, keep = _read_response(conn, head_only)
            except httpx.TransportError:
                if broke is not None:
                    raise httpx.WriteError(str(broke)) from broke
                raise
        except BaseException:
            conn.close()
            raise
        if keep and not head_only and broke is None:
            self.give_back(key, conn)
        else:
            conn.close()
        return status, headers, content

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


class Pool:
    """Keep-alive connections to one server (``url``, which may carry a path prefix),
    each request written with one ``sendall`` and its answer read into bytes."""

    def __init__(
        self, url: str, headers: dict[str, str], timeout: float | None, verify: str | bool
    ) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the URL must be http:// or https:// with a host, not {url!r}")
        default = 443 if scheme == "https" else 80
        port = parts.port or default
        host = parts.hostname
        self._key = (scheme, host, port)
        self._prefix = parts.path.rstrip("/").encode("ascii")
        shown = f"[{host}]" if ":" in host else host
        fixed = {"Host": shown if port == default else f"{shown}:{port}", **headers}
        self._content_type = fixed.pop("Content-Type")
        self._accept = fixed.pop("Accept")
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._heads: dict[tuple[str | None, str | None], bytes] = {}
        self._timeouts = (timeout, timeout, timeout)
        self._sockets = _Sockets(verify)

    def _head(self, content_type: str | None, accept: str | None) -> bytes:
        head = self._heads.get((content_type, accept))
        if head is None:
            head = self._fixed + (
                f"Content-Type: {content_type or self._content_type}\r\n"
                f"Accept: {accept or self._accept}\r\n"
            ).encode("latin-1")
            self._heads[(content_type, accept)] = head
        return head

    def head(
        self,
        method: str,
        path: str,
        content_type: str | None,
        accept: str | None,
        length: int | None,
    ) -> bytes:
        """A request's head, up to and including the empty line (``length``: the body's
        Content-Length, None for none); the same for the same arguments, so a caller that
        sends many alike may keep it."""
        return b"".join(
            (
                method.encode("ascii"),
                b" ",
                self._prefix + path.encode("ascii"),
                b" HTTP/1.1\r\n",
                self._head(content_type, accept),
                b"" if length is None else b"Content-Length: %d\r\n" % length,
                b"\r\n",
            )
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One exchange: the status, the headers (lower-case names) and the body."""
        if body is None and method in ("GET", "HEAD", "DELETE"):
            payload = self.head(method, path, content_type, accept, None)
        else:
            body = body or b""
            payload = self.head(method, path, content_type, accept, len(body)) + body
        status, raw, content = self.exchange(payload, method == "HEAD")
        return status, dict(raw), content

    def exchange(self, payload: bytes, head_only: bool = False) -> tuple[int, Headers, bytes]:
        """Send a whole request (``head`` and its body) and read its answer: the status,
        the headers as (lower-case name, value) pairs and the body."""
        return self._sockets.exchange(self._key, payload, head_only, self._timeouts)

    def close(self) -> None:
        self._sockets.close()


class LeanTransport(httpx.BaseTransport):
    """The same keep-alive sockets behind httpx's transport interface."""

    def __init__(self, verify: str | bool = True) -> None:
        self._sockets = _Sockets(verify)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        body = request.read()
        lines = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        lines.append(body)
        timeouts = request.extensions.get("timeout", {})
        try:
            status, headers, content = self._sockets.exchange(
                key,
                b"".join(lines),
                request.method == "HEAD",
                (timeouts.get("connect"), timeouts.get("write"), timeouts.get("read")),
            )
        except httpx.TransportError as exc:
            exc.request = request
            raise
        return httpx.Response(
            status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def close(self) -> None:
        self._sockets.close()


def _recv(conn: _Connection) -> bytes:
    try:
        data = conn.sock.recv(_RECV)
    except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: SO_RCVTIMEO ran out
        raise httpx.ReadTimeout(str(exc)) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc)) from exc
    if not data:
        raise httpx.RemoteProtocolError("Server disconnected without sending a complete response.")
    return data


def _read_exact(conn: _Connection, size: int) -> bytes:
    buffer = conn.buffer
    if len(buffer) < size:
        pieces = [buffer]
        have = len(buffer)
        while have < size:
            data = _recv(conn)
            pieces.append(data)
            have += len(data)
        buffer = b"".join(pieces)
    if len(buffer) == size:
        conn.buffer = b""
        return buffer
    out, conn.buffer = buffer[:size], buffer[size:]
    return out


def _read_line(conn: _Connection) -> bytes:
    while True:
        end = conn.buffer.find(b"\r\n")
        if end >= 0:
            line, conn.buffer = conn.buffer[:end], conn.buffer[end + 2 :]
            return line
        if len(conn.buffer) > _MAX_HEAD:
            raise httpx.RemoteProtocolError("response line too long")
        conn.buffer += _recv(conn)


def _read_response(conn: _Connection, head_only: bool) -> tuple[int, Headers, bytes, bool]:
    while True:
        answer = _read_answer(conn, head_only)
        if not 100 <= answer[0] < 200 or answer[0] == 101:
            return answer
        # An interim answer (100 Continue, 103 Early Hints): the final one follows.


def _read_answer(conn: _Connection, head_only: bool) -> tuple[int, Headers, bytes, bool]:
    buffer = conn.buffer or _recv(conn)
    while (head_end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > _MAX_HEAD:
            raise httpx.RemoteProtocolError("response head too long")
        buffer += _recv(conn)
    head, conn.buffer = buffer[:head_end].decode("latin-1"), buffer[head_end + 4 :]
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError("malformed status line")
    status = int(parts[1])
    headers: Headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise httpx.RemoteProtocolError("malformed header line")
        headers.append((name.strip().lower(), value.strip()))
    length: int | None = None
    chunked = False
    keep = parts[0] == "HTTP/1.1"
    for name, value in headers:
        if name == "content-length":
            if not value.isdigit():
                raise httpx.RemoteProtocolError("malformed Content-Length")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            keep = "close" not in value.lower() and (keep or "keep-alive" in value.lower())
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", keep
    if chunked:
        return status, headers, _read_chunked(conn), keep
    if length is not None:
        return status, headers, _read_exact(conn, length), keep
    return status, headers, _read_to_close(conn), False


def _read_chunked(conn: _Connection) -> bytes:
    pieces: list[bytes] = []
    while True:
        size_line = _read_line(conn).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise httpx.RemoteProtocolError("malformed chunk size") from None
        if size == 0:
            while _read_line(conn):  # trailers, up to the empty line
                pass
            return b"".join(pieces)
        pieces.append(_read_exact(conn, size))
        _read_exact(conn, 2)


def _read_to_close(conn: _Connection) -> bytes:
    pieces = [conn.buffer]
    conn.buffer = b""
    while True:
        try:
            pieces.append(_recv(conn))
        except httpx.RemoteProtocolError:  # the close that ends the body
            return b"".join(pieces)
