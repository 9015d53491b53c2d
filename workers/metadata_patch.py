"""Metadata updates without re-sending vectors: ``set`` merges fields, ``unset`` removes them.

The result of an update obeys the same rules as metadata given at upsert: a flat object
of strings, numbers, booleans and lists of strings, at most ``max_bytes`` of JSON.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

Metadata = dict[str, Any] | None

MAX_FIELD_NAME_BYTES = 256


class PatchError(ValueError):
    """An update that cannot be applied; the message is safe to show the client."""


def _allowed_value(value: object) -> bool:
    if isinstance(value, bool | str | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def check_patch(fields: object, unset: object) -> tuple[dict[str, Any], list[str]]:
    """Validate ``set`` and ``unset`` (either may be None); at least one field must change."""
    fields = {} if fields is None else fields
    unset = [] if unset is None else unset
    if not isinstance(fields, dict):
        raise PatchError("'set' must be an object of metadata fields")
    if not isinstance(unset, list) or not all(isinstance(name, str) for name in unset):
        raise PatchError("'unset' must be a list of field names")
    if not fields and not unset:
        raise PatchError("send 'set' and/or 'unset' with at least one field")
    for name in [*fields, *unset]:
        if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_FIELD_NAME_BYTES:
            raise PatchError(f"field names must be 1-{MAX_FIELD_NAME_BYTES} bytes of UTF-8")
    for name, value in fields.items():
        if not _allowed_value(value):
            raise PatchError(
                f"field '{name}': metadata values are strings, numbers, booleans or lists "
                "of strings (metadata is a flat object, no nesting)"
            )
    both = sorted(set(fields) & set(unset))
    if both:
        raise PatchError(f"field '{both[0]}' is both in 'set' and in 'unset'")
    return dict(fields), list(dict.fromkeys(unset))


def patched(meta: Metadata, fields: dict[str, Any], unset: list[str]) -> Metadata:
    """The metadata after the update; an update that leaves no field gives None."""
    out = dict(meta) if meta else {}
    for name in unset:
        out.pop(name, None)
    out.update(fields)
    return out or None


def check_size(vector_id: str, meta: Metadata, max_bytes: int | None) -> None:
    """Refuse a result over the metadata size limit, naming the vector."""
    if max_bytes is None or meta is None:
        return
    size = len(orjson.dumps(meta))
    if size > max_bytes:
        raise PatchError(
            f"metadata of vector '{vector_id[:80]}' would be {size} bytes of JSON after the "
            f"update, over the limit of {max_bytes}; nothing was updated"
        )
