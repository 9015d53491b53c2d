"""Signed chain heads kept outside the database, so a cut-off tail is detectable.

An anchor is (seq, hash, anchored_at, source) signed with Ed25519. The key is
derived from ``VP_ANCHOR_SIGNING_KEY`` in the env file. Anchors go where the
database does not: census archives and ``<data>/anchors/`` (one small JSON
file each, meant to be copied off the machine). ``check_anchors`` confirms the
log still reaches every anchored head with the same hash; someone who deletes
the newest events (and their projection rows) cannot also un-sign an anchor.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine

from eventlog.hashchain import GENESIS_HASH, Mismatch, canonical_json
from eventlog.scan import head_row, row_at, snapshot_cursor

# Signed bytes are prefixed so an anchor signature can never be replayed as another message.
_DOMAIN = b"vectorpanda-anchor-v1\n"
# The request log: at rotation its last line is {"head_anchor": {...}} (see request_log.py).
REQUEST_LOG_NAME = "requests.jsonl"
ROTATION_MARK = b'{"head_anchor":'
# The anchor is the rotated file's last line; only its tail is read, not the whole file.
ROTATION_TAIL_BYTES = 16 * 1024


def signing_key(secret: str) -> Ed25519PrivateKey:
    """The Ed25519 key seeded by the env file's secret (any string; hashed to 32 bytes)."""
    if not secret:
        raise ValueError("VP_ANCHOR_SIGNING_KEY is empty")
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(secret.encode("utf-8")).digest())


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def _message(seq: int, hash: str, anchored_at: str, source: str) -> bytes:
    body = {"seq": seq, "hash": hash, "anchored_at": anchored_at, "source": source}
    return _DOMAIN + canonical_json(body)


def sign_head(
    key: Ed25519PrivateKey, seq: int, hash: str, anchored_at: str, source: str
) -> dict[str, Any]:
    """The anchor record: the head, when and by what it was anchored, and the signature."""
    signature = key.sign(_message(seq, hash, anchored_at, source)).hex()
    return {
        "seq": seq,
        "hash": hash,
        "anchored_at": anchored_at,
        "source": source,
        "public_key": public_hex(key.public_key()),
        "signature": signature,
    }


def signature_ok(anchor: dict[str, Any], key: Ed25519PublicKey) -> bool:
    """True when ``anchor`` was signed by ``key`` (its own public_key field is not trusted)."""
    try:
        message = _message(
            int(anchor["seq"]),
            str(anchor["hash"]),
            str(anchor["anchored_at"]),
            str(anchor["source"]),
        )
        key.verify(bytes.fromhex(str(anchor["signature"])), message)
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return False
    return True


def write_anchor(directory: Path, anchor: dict[str, Any]) -> Path:
    """Write one anchor file durably (temp, fsync, rename, fsync the directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{int(anchor['seq']):012d}-{anchor['source']}.json"
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as fh:
        fh.write(orjson.dumps(anchor, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


# workers.backup_store.MANIFEST_FILE: backups sign the log head into their manifest.
BACKUP_MANIFEST = "backup.json"


@dataclass(slots=True)
class AnchorReport:
    """What the anchors say about the log: how many held, and the newest one."""

    checked: int = 0
    last_anchored_seq: int | None = None
    last_anchor: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)


def _tail_lines(path: Path, size: int) -> list[bytes]:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        fh.seek(max(0, end - size))
        return fh.read().splitlines()


def _as_anchor(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _found_anchors(directory: Path) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(name, anchor or None when unreadable) for each anchor kept in ``directory``.

    Anchor files (``*.json``) hold one anchor each; the manifests of a backup store
    laid out there (``<client>/<backup>/backup.json``) carry the head signed when
    the backup was taken; a rotated request log (``requests.jsonl.<n>``) ends with
    the head signed when it was rotated.
    """
    for path in sorted(directory.glob("*.json")):
        try:
            yield path.name, _as_anchor(orjson.loads(path.read_bytes()))
        except (OSError, orjson.JSONDecodeError):
            yield path.name, None
    for path in sorted(directory.glob(f"*/*/{BACKUP_MANIFEST}")):
        name = str(path.relative_to(directory))
        try:
            head = orjson.loads(path.read_bytes()).get("head") or {}
        except (OSError, orjson.JSONDecodeError, AttributeError):
            yield name, None  # unreadable: reported as such
            continue
        if isinstance(head, dict) and "signature" in head:
            yield name, head
    for path in sorted(directory.glob(f"{REQUEST_LOG_NAME}*")):
        try:
            lines = _tail_lines(path, ROTATION_TAIL_BYTES)
        except OSError:
            yield path.name, None
            continue
        for line in lines:
            if line.startswith(ROTATION_MARK):
                try:
                    record = orjson.loads(line)
                    yield f"{path.name} (rotation)", _as_anchor(record.get("head_anchor"))
                except (orjson.JSONDecodeError, AttributeError):
                    yield f"{path.name} (rotation)", None


def check_anchors(cursor: Any, directory: Path, key: Ed25519PublicKey) -> AnchorReport:
    """Check every anchor kept in ``directory`` against the log under ``cursor``.

    Anchor files, a backup store's signed manifests and rotated request logs (see
    ``_found_anchors``).
    """
    report = AnchorReport()
    head = head_row(cursor)
    head_seq = head[0] if head is not None else 0
    for name, anchor in _found_anchors(directory):
        report.checked += 1
        try:
            if anchor is None:
                raise ValueError(name)
            seq, expected = int(anchor["seq"]), str(anchor["hash"])
        except (KeyError, TypeError, ValueError):
            report.mismatches.append(Mismatch(0, f"anchor {name} is unreadable"))
            continue
        if not signature_ok(anchor, key):
            report.mismatches.append(
                Mismatch(seq, f"anchor {name} has no valid signature: forged or altered")
            )
            continue
        if report.last_anchored_seq is None or seq > report.last_anchored_seq:
            report.last_anchored_seq, report.last_anchor = seq, name
        # An anchor of the empty log (a census at first start) names the genesis hash.
        found = (0, GENESIS_HASH) if seq == 0 else row_at(cursor, seq)
        if found is None and seq <= head_seq:
            report.mismatches.append(
                Mismatch(seq, f"the event anchored in {name} is missing from the log")
            )
        elif found is None:
            report.mismatches.append(
                Mismatch(
                    seq,
                    f"the log ends at seq {head_seq} but anchor {name} proves it reached "
                    f"seq {seq}: events were cut from the log",
                )
            )
        elif found[1] != expected:
            report.mismatches.append(
                Mismatch(seq, f"event hash differs from the one signed in anchor {name}")
            )
    return report


class HeadAnchorer:
    """Signs chain heads with the env file's key and files each one under ``directory``."""

    def __init__(self, secret: str, directory: Path) -> None:
        self._key = signing_key(secret)
        self.directory = directory

    def sign(self, seq: int, hash: str, anchored_at: str, source: str) -> dict[str, Any]:
        """The signed anchor record alone, for a place that keeps it itself (a backup manifest)."""
        return sign_head(self._key, seq, hash, anchored_at, source)

    def anchor(self, seq: int, hash: str, anchored_at: str, source: str) -> dict[str, Any]:
        """Sign (seq, hash), write the anchor file durably and return the anchor record."""
        record = sign_head(self._key, seq, hash, anchored_at, source)
        write_anchor(self.directory, record)
        return record


class LogHeadAnchorer:
    """Signs the event log's current head, read on an engine of its own (opened on first use)."""

    def __init__(self, anchorer: HeadAnchorer, open_log: Callable[[], Engine]) -> None:
        self._anchorer = anchorer
        self._open_log = open_log
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __call__(self, source: str) -> dict[str, Any]:
        """The signed head (also filed under the anchors directory)."""
        with self._lock:
            if self._engine is None:
                self._engine = self._open_log()
            with snapshot_cursor(self._engine) as cursor:
                head = head_row(cursor)
        seq, hash = head if head is not None else (0, GENESIS_HASH)
        anchored_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return self._anchorer.anchor(seq, hash, anchored_at, source)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
