"""Where the request log goes: JSON lines, written in batches.

A handler that wrote each line as it came (or handed each one to a queue
thread) costs every request a thread switch on the GIL; measured here that
added milliseconds per request under load. Lines are buffered instead and
written when 512 have piled up or once a second, whichever is first. A crash
loses at most that second of request-log lines (the audit trail is the event
log, which is durable).

With an anchor key, the file being rotated ends with the event log's head,
signed (``{"head_anchor": {...}}``, see eventlog/anchors.py): a rotated request
log copied off the machine then also proves how long the chain was, and
``vectorpanda audit verify --anchors <that directory>`` checks it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("vectorpanda.request_log")
# Signs the event log's head for ``source``; None when there is no log to anchor.
HeadSigner = Callable[[str], dict[str, Any] | None]

FLUSH_EVERY_S = 1.0
BATCH_LINES = 512
MAX_BYTES = 64 * 1024 * 1024
BACKUPS = 10


def _write_whole(fd: int, data: bytes) -> None:
    """One write system call per batch: on an O_APPEND file several coordinator processes
    (VP_COORDINATOR_PROCESSES) append whole batches, never lines torn into each other."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class BatchedLines(logging.handlers.MemoryHandler):
    """Buffers records and writes them to ``target`` in batches, from a timer thread too."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(BATCH_LINES, flushLevel=logging.CRITICAL + 1, target=target)
        self._stopping = threading.Event()
        threading.Thread(target=self._tick, name="request-log", daemon=True).start()

    def _tick(self) -> None:
        while not self._stopping.wait(FLUSH_EVERY_S):
            self.flush()

    def flush(self) -> None:
        """Write the buffered lines with one write (and one rollover check), not one each."""
        lock = self.lock
        assert lock is not None  # created by Handler.__init__
        with lock:
            records, self.buffer = self.buffer, []
        target = self.target
        if not records or target is None:
            return
        text = "".join(f"{record.getMessage()}\n" for record in records)
        target.acquire()
        try:
            if isinstance(target, logging.handlers.RotatingFileHandler):
                if target.stream is None:
                    target.stream = target._open()
                if target.maxBytes > 0 and target.stream.tell() + len(text) >= target.maxBytes:
                    target.doRollover()
            if isinstance(target, logging.StreamHandler):
                target.stream.flush()
                _write_whole(target.stream.fileno(), text.encode())
            else:
                for record in records:
                    target.handle(record)
        finally:
            target.release()

    def close(self) -> None:
        self._stopping.set()
        super().close()  # flushes what is left


class AnchoredRotatingFile(logging.handlers.RotatingFileHandler):
    """Rotates like its parent, after closing the full file with the signed chain head."""

    def __init__(self, path: Path, max_bytes: int, backups: int, sign: HeadSigner) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups)
        self._sign = sign

    def doRollover(self) -> None:
        if self.stream is not None:
            source = "request-log-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            try:
                anchor = self._sign(source)
                if anchor is not None:
                    self.stream.write(orjson.dumps({"head_anchor": anchor}).decode() + "\n")
                    self.stream.flush()
            except Exception:
                # The rotation must happen anyway; the anchors directory has the others.
                log.exception("could not anchor the chain head in the rotated request log")
        super().doRollover()


def request_log_handler(
    log_dir: Path | None,
    sign: HeadSigner | None = None,
    max_bytes: int = MAX_BYTES,
) -> logging.Handler:
    """Rotated ``<log_dir>/requests.jsonl``, or stdout (containers) when ``log_dir`` is None.

    With ``sign``, each rotation first appends the signed head of the event log.
    """
    if log_dir is not None:
        # Here, not at the top: eventlog.anchors loads SQLAlchemy, and the worker
        # processes, which log requests to stdout, should not.
        from eventlog.anchors import REQUEST_LOG_NAME

        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / REQUEST_LOG_NAME
        if sign is not None:
            target: logging.Handler = AnchoredRotatingFile(path, max_bytes, BACKUPS, sign)
        else:
            target = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=BACKUPS
            )
    else:
        target = logging.StreamHandler(sys.stdout)
    target.setFormatter(logging.Formatter("%(message)s"))
    return BatchedLines(target)
