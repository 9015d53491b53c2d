"""Wrapping clients' data keys under a master key (the key-encryption key).

``KeyWrapper`` is the port: a cloud KMS or Vault adapter is one class with the same
three members. ``LocalKeyWrapper`` is the default: AES key wrap (RFC 3394, from the
``cryptography`` library) under a 256-bit master key derived with HKDF-SHA256 from
``VP_MASTER_KEY`` in the 0600 env file. It may also hold retired master keys
(``VP_MASTER_KEY_OLD``) to unwrap what they wrapped while ``vectorpanda admin
rotate-master-key`` re-wraps it; new wraps always use the current one.

Only the coordinator holds a wrapper. Workers get plaintext data keys of the tenants
they own, over the authenticated worker socket, never the master key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)


class KeyUnavailable(RuntimeError):
    """A wrapped data key cannot be unwrapped: its master key is not held, or it is damaged."""


class KeyWrapper(Protocol):
    """Wraps and unwraps 256-bit data keys."""

    @property
    def key_id(self) -> str:
        """Id of the master key new wraps use (recorded next to each wrapped key)."""
        ...

    def wrap(self, data_key: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, wrapper_key_id: str) -> bytes: ...


def derive_master_key(secret: str) -> bytes:
    """The 256-bit key-encryption key derived from the configured secret string."""
    if len(secret) < 32:
        raise ValueError("VP_MASTER_KEY must be at least 32 characters of random text")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vectorpanda master key v1")
    return hkdf.derive(secret.encode("utf-8"))


def master_key_id(kek: bytes) -> str:
    """A short public id of a master key (a hash of it; reveals nothing usable)."""
    return hashlib.sha256(b"vectorpanda master key id\x00" + kek).hexdigest()[:16]


class LocalKeyWrapper:
    """AES-KW under master keys from the env file; the first is current."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one master key is needed")
        keys = [derive_master_key(s) for s in secrets]
        self._keys = {master_key_id(k): k for k in keys}
        self._current = master_key_id(keys[0])

    @property
    def key_id(self) -> str:
        return self._current

    def holds(self, wrapper_key_id: str) -> bool:
        """Whether this wrapper can unwrap keys wrapped under ``wrapper_key_id``."""
        return wrapper_key_id in self._keys

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._keys[self._current], data_key)

    def unwrap(self, wrapped: bytes, wrapper_key_id: str) -> bytes:
        kek = self._keys.get(wrapper_key_id)
        if kek is None:
            raise KeyUnavailable(f"master key {wrapper_key_id} is not configured")
        try:
            return aes_key_unwrap(kek, wrapped)
        except InvalidUnwrap:
            raise KeyUnavailable(f"a data key does not unwrap under {wrapper_key_id}") from None

    def __repr__(self) -> str:
        return f"LocalKeyWrapper(current={self._current}, held={sorted(self._keys)})"
