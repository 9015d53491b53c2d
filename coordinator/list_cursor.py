"""Listing cursors: an opaque position in one client's collection that only it can use.

A cursor is ``base64url(version | last id | HMAC-SHA256(key, client, collection, last id))``.
The key is derived from the server's key pepper, so every coordinator of a fleet accepts
the cursors of the others and a restart does not break a walk. A cursor altered, made up,
or presented by another client or for another collection fails the MAC check: the
caller learns nothing and reads nothing (the API answers 422).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

VERSION = b"\x01"
_MAC_BYTES = 32
_LEN = struct.Struct(">I")
MAX_CURSOR_CHARS = 1024


class CursorError(ValueError):
    """A cursor this server did not issue to this client for this collection."""


class ListCursors:
    """Issues and opens cursors under one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the cursor key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_pepper(cls, pepper: bytes) -> ListCursors:
        """Cursor key derived from the key pepper; separate from API key digests by label."""
        return cls(hmac.new(pepper, b"vectorpanda/list-cursor/v1", hashlib.sha256).digest())

    @classmethod
    def ephemeral(cls) -> ListCursors:
        """A random key: cursors valid in this process only (tests, no pepper wired)."""
        return cls(os.urandom(32))

    def _mac(self, client_id: str, collection: str, last_id: bytes) -> bytes:
        fields = [client_id.encode(), collection.encode(), last_id]
        message = VERSION + b"".join(_LEN.pack(len(f)) + f for f in fields)
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, client_id: str, collection: str, last_id: str) -> str:
        """The cursor that continues after ``last_id``."""
        raw = last_id.encode("utf-8")
        token = VERSION + raw + self._mac(client_id, collection, raw)
        return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")

    def open(self, client_id: str, collection: str, cursor: str) -> str:
        """The last id a cursor stands for; CursorError unless it is this caller's own."""
        if not cursor or len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise CursorError("malformed cursor")
        try:
            token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise CursorError("malformed cursor") from None
        if len(token) <= 1 + _MAC_BYTES or token[:1] != VERSION:
            raise CursorError("malformed cursor")
        raw, mac = token[1:-_MAC_BYTES], token[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(client_id, collection, raw)):
            raise CursorError("cursor was not issued for this collection")
        return raw.decode("utf-8")
