"""What the SDK hands back: collections, matches, fetched vectors, usage."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """A collection as the server describes it."""

    name: str
    dimension: int
    metric: str
    index: str
    vector_count: int
    created_at: str
    hnsw: dict[str, int] | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CollectionInfo:
        return cls(
            name=body["name"],
            dimension=int(body["dimension"]),
            metric=body["metric"],
            index=body["index"],
            vector_count=int(body.get("vector_count", 0)),
            created_at=str(body.get("created_at", "")),
            hnsw=body.get("hnsw"),
        )


@dataclass(frozen=True, slots=True)
class Indexing:
    """How much of a collection its index holds (``pending`` vectors wait for the HNSW
    graph; queries search them exactly meanwhile)."""

    vector_count: int
    indexed: int
    pending: int
    fully_indexed: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Indexing:
        return cls(
            vector_count=int(body["vector_count"]),
            indexed=int(body["indexed"]),
            pending=int(body["pending"]),
            fully_indexed=bool(body["fully_indexed"]),
        )


@dataclass(frozen=True, slots=True)
class Match:
    """One nearest neighbour: similarity for cosine/ip, squared L2 distance for l2."""

    id: str
    score: float
    metadata: dict[str, Any] | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class QueryResult(Sequence[Match]):
    """The matches of one query vector, best first, with numpy views of the columns."""

    matches: list[Match] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> QueryResult:
        matches = []
        for m in body.get("matches", []):
            values = m.get("values")
            matches.append(
                Match(
                    id=m["id"],
                    score=float(m["score"]),
                    metadata=m.get("metadata"),
                    values=np.asarray(values, dtype=np.float32) if values is not None else None,
                )
            )
        return cls(matches)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.matches]

    @property
    def scores(self) -> np.ndarray:
        return np.fromiter((m.score for m in self.matches), dtype=np.float32, count=len(self))

    @property
    def values(self) -> np.ndarray | None:
        """The matches' vectors as one (k, d) float32 matrix, when asked for."""
        if not self.matches or self.matches[0].values is None:
            return None
        return np.stack([m.values for m in self.matches if m.values is not None])

    def __len__(self) -> int:
        return len(self.matches)

    def __iter__(self) -> Iterator[Match]:
        return iter(self.matches)

    @overload
    def __getitem__(self, index: int) -> Match: ...

    @overload
    def __getitem__(self, index: slice) -> list[Match]: ...

    def __getitem__(self, index: int | slice) -> Match | list[Match]:
        return self.matches[index]


@dataclass(frozen=True, slots=True)
class FetchedVector:
    values: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """The caller's usage against its tier's limits (``raw`` keeps every field sent)."""

    client_id: str
    tier: str
    status: str
    collections: int
    vectors: int
    bytes: int
    limits: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Usage:
        return cls(
            client_id=body["client_id"],
            tier=body["tier"],
            status=body["status"],
            collections=int(body["collections"]),
            vectors=int(body["vectors"]),
            bytes=int(body["bytes"]),
            limits=dict(body.get("limits", {})),
            raw=body,
        )
