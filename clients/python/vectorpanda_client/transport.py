"""A lean HTTP/1.1 keep-alive transport for the blocking client.

httpx's default transport (httpcore + h11) writes a request's head and body with two
``send`` calls, so the server wakes up and parses twice per request, and spends a
good part of the client's CPU on its state machine. This one keeps plain sockets
alive per host and writes each request with one ``sendall``; it reads answers with
``Content-Length`` or chunked bodies. It raises httpx's own exceptions, so the
client's retry rules (base.NOT_SENT) hold unchanged. ``Client(..., transport=...)``
still takes any other httpx transport.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading

import httpx

MAX_IDLE_PER_HOST = 32
_MAX_HEAD = 64 * 1024


class _Connection:
    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def stale(self) -> bool:
        """Readable while idle: the server closed it (or sent what nobody asked for)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable) or bool(self.buffer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class LeanTransport(httpx.BaseTransport):
    """Keep-alive sockets per (scheme, host, port); one write per request."""

    def __init__(self, verify: str | bool = True) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif isinstance(self._verify, str):
                context = ssl.create_default_context(cafile=self._verify)
            else:
                context = ssl.create_default_context()
            self._ssl = context
        return self._ssl

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if not conn.stale():
                    return conn
                conn.close()
        return None

    def _give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < MAX_IDLE_PER_HOST:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, request: httpx.Request, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._context().wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return _Connection(sock)

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
        payload = b"".join(lines)
        conn = self._take(key) or self._connect(request, key)
        timeouts = request.extensions.get("timeout", {})
        try:
            conn.sock.settimeout(timeouts.get("write"))
            try:
                conn.sock.sendall(payload)
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc), request=request) from exc
            except OSError as exc:
                raise httpx.WriteError(str(exc), request=request) from exc
            conn.sock.settimeout(timeouts.get("read"))
            status, headers, content, keep = _read_response(conn, request)
        except BaseException:
            conn.close()
            raise
        if keep and request.method != "HEAD":
            self._give_back(key, conn)
        else:
            conn.close()
        return httpx.Response(
            status,
            headers=headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _recv(conn: _Connection, request: httpx.Request) -> bytes:
    try:
        data = conn.sock.recv(256 * 1024)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc), request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    return data


def _disconnected(request: httpx.Request) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(
        "Server disconnected without sending a complete response.", request=request
    )


def _read_exact(conn: _Connection, request: httpx.Request, size: int) -> bytes:
    while len(conn.buffer) < size:
        data = _recv(conn, request)
        if not data:
            raise _disconnected(request)
        conn.buffer += data
    out, conn.buffer = conn.buffer[:size], conn.buffer[size:]
    return out


def _read_line(conn: _Connection, request: httpx.Request) -> bytes:
    while True:
        end = conn.buffer.find(b"\r\n")
        if end >= 0:
            line, conn.buffer = conn.buffer[:end], conn.buffer[end + 2 :]
            return line
        if len(conn.buffer) > _MAX_HEAD:
            raise httpx.RemoteProtocolError("response line too long", request=request)
        data = _recv(conn, request)
        if not data:
            raise _disconnected(request)
        conn.buffer += data


def _read_response(
    conn: _Connection, request: httpx.Request
) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
    while True:
        head_end = conn.buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            break
        if len(conn.buffer) > _MAX_HEAD:
            raise httpx.RemoteProtocolError("response head too long", request=request)
        data = _recv(conn, request)
        if not data:
            raise _disconnected(request)
        conn.buffer += data
    head, conn.buffer = conn.buffer[:head_end], conn.buffer[head_end + 4 :]
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError("malformed status line", request=request)
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    keep = parts[0] == b"HTTP/1.1"
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError("malformed header line", request=request)
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" and value.isdigit():
            length = int(value)
        elif lower == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif lower == b"connection":
            keep = b"close" not in value.lower() and (keep or b"keep-alive" in value.lower())
    if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", keep
    if chunked:
        return status, headers, _read_chunked(conn, request), keep
    if length is not None:
        return status, headers, _read_exact(conn, request, length), keep
    return status, headers, _read_to_close(conn, request), False


def _read_chunked(conn: _Connection, request: httpx.Request) -> bytes:
    pieces: list[bytes] = []
    while True:
        size_line = _read_line(conn, request).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise httpx.RemoteProtocolError("malformed chunk size", request=request) from None
        if size == 0:
            while _read_line(conn, request):  # trailers, up to the empty line
                pass
            return b"".join(pieces)
        pieces.append(_read_exact(conn, request, size))
        _read_exact(conn, request, 2)


def _read_to_close(conn: _Connection, request: httpx.Request) -> bytes:
    pieces = [conn.buffer]
    conn.buffer = b""
    while True:
        data = _recv(conn, request)
        if not data:
            return b"".join(pieces)
        pieces.append(data)
