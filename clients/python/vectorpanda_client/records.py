"""List, count and update as plans of HTTP calls, and what they hand back.

Shared by ``Collection`` and ``AsyncCollection``; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorpanda_client.errors import InvalidError
from vectorpanda_client.exchange import Call, Operation
from vectorpanda_client.operations import MAX_IDS_PER_REQUEST, Metadata, chunks, collection_path

MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class ListedVector:
    """One vector of a listing: its id, and metadata and values when asked for."""

    id: str
    metadata: dict[str, Any] | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class VectorPage:
    """One page of a listing; ``next_cursor`` is None on the last page."""

    vectors: list[ListedVector]
    next_cursor: str | None


def list_page(
    name: str,
    limit: int,
    cursor: str | None,
    filter: Metadata | None,
    include_metadata: bool,
    include_values: bool,
) -> Operation[VectorPage]:
    """One page of ids in ascending UTF-8 byte order, after ``cursor``."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    body: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        body["cursor"] = cursor
    if filter is not None:
        body["filter"] = filter
    if include_metadata:
        body["include_metadata"] = True
    if include_values:
        body["include_values"] = True
    answer = yield Call("POST", collection_path(name, "list"), body)
    page = answer.json()
    vectors = []
    for v in page["vectors"]:
        values = v.get("values")
        vectors.append(
            ListedVector(
                id=v["id"],
                metadata=v.get("metadata"),
                values=np.asarray(values, dtype=np.float32) if values is not None else None,
            )
        )
    return VectorPage(vectors, page.get("next_cursor"))


def count(name: str, filter: Metadata | None) -> Operation[int]:
    """The exact number of vectors (matching ``filter``, if given)."""
    body = {"filter": filter} if filter is not None else {}
    answer = yield Call("POST", collection_path(name, "count"), body)
    return int(answer.json()["count"])


def update(
    name: str,
    ids: Sequence[str] | None,
    filter: Metadata | None,
    set_fields: Metadata | None,
    unset: Sequence[str] | None,
) -> Operation[int]:
    """Merge ``set_fields`` and remove ``unset`` by ids (batched) or by filter."""
    if (ids is None) == (filter is None):
        raise InvalidError("pass either ids or filter to update()")
    if not set_fields and not unset:
        raise InvalidError("pass set= and/or unset= with at least one field")
    patch: dict[str, Any] = {}
    if set_fields:
        patch["set"] = dict(set_fields)
    if unset:
        patch["unset"] = [str(field) for field in unset]
    path = collection_path(name, "update")
    # Setting and removing fields is idempotent, so a broken-off exchange may be repeated.
    if filter is not None:
        answer = yield Call("POST", path, {"filter": filter, **patch})
        return int(answer.json()["updated"])
    assert ids is not None
    id_list = [str(i) for i in ids]
    updated = 0
    for start in chunks(len(id_list), MAX_IDS_PER_REQUEST):
        body = {"ids": id_list[start : start + MAX_IDS_PER_REQUEST], **patch}
        answer = yield Call("POST", path, body)
        updated += int(answer.json()["updated"])
    return updated
