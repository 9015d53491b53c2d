"""What a collection is: name, dimension, metric, index kind; parsed and checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from workers.errors import StoreError
from workers.protocol import COLLECTION_RE, TENANT_RE, ErrorCode

METRICS = ("cosine", "l2", "ip")
INDEX_KINDS = ("flat", "hnsw")
MAX_DIMENSION = 65_536
HNSW_DEFAULTS = {"m": 32, "ef_construction": 200}
HNSW_LIMITS = {"m": (4, 128), "ef_construction": (8, 2000)}


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    """The immutable definition of a collection, stored as collection.json."""

    name: str
    dimension: int
    metric: str
    index: str
    created_at: str
    hnsw: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The collection.json document."""
        doc: dict[str, Any] = {
            "name": self.name,
            "dimension": self.dimension,
            "metric": self.metric,
            "index": self.index,
            "created_at": self.created_at,
        }
        if self.hnsw is not None:
            doc["hnsw"] = self.hnsw
        return doc

    def info(self, vector_count: int) -> dict[str, Any]:
        """The INFO object of the wire protocol."""
        doc: dict[str, Any] = {
            "name": self.name,
            "dimension": self.dimension,
            "metric": self.metric,
            "index": self.index,
            "vector_count": vector_count,
            "created_at": self.created_at,
        }
        if self.hnsw is not None:
            doc["hnsw"] = dict(self.hnsw)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> CollectionSpec:
        """Read a collection.json document written by ``to_json``."""
        return cls(
            name=str(doc["name"]),
            dimension=int(doc["dimension"]),
            metric=str(doc["metric"]),
            index=str(doc["index"]),
            created_at=str(doc["created_at"]),
            hnsw=doc.get("hnsw"),
        )


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC with a trailing 'Z'."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_tenant_id(tenant: object) -> str:
    """Return the tenant id if it is safe to use as a path component."""
    if not isinstance(tenant, str) or not TENANT_RE.fullmatch(tenant):
        raise StoreError(ErrorCode.INVALID, "invalid tenant id")
    return tenant


def check_collection_name(name: object) -> str:
    """Return the collection name if it is safe to use as a path component."""
    if not isinstance(name, str) or not COLLECTION_RE.fullmatch(name):
        raise StoreError(
            ErrorCode.INVALID,
            "invalid collection name: use 1-63 of a-z, 0-9, '_' and '-', starting with a-z or 0-9",
        )
    return name


def parse_collection_spec(args: dict[str, Any]) -> CollectionSpec:
    """Build a spec from CREATE_COLLECTION arguments, refusing anything invalid."""
    name = check_collection_name(args.get("collection"))
    dimension = args.get("dimension")
    if not isinstance(dimension, int) or isinstance(dimension, bool):
        raise StoreError(ErrorCode.INVALID, "dimension must be an integer")
    if not 1 <= dimension <= MAX_DIMENSION:
        raise StoreError(ErrorCode.INVALID, f"dimension must be between 1 and {MAX_DIMENSION}")
    metric = args.get("metric")
    if metric not in METRICS:
        raise StoreError(ErrorCode.INVALID, f"metric must be one of {', '.join(METRICS)}")
    index = args.get("index", "flat")
    if index not in INDEX_KINDS:
        raise StoreError(ErrorCode.INVALID, f"index must be one of {', '.join(INDEX_KINDS)}")
    hnsw = _hnsw_params(args.get("hnsw")) if index == "hnsw" else None
    if index != "hnsw" and args.get("hnsw") is not None:
        raise StoreError(ErrorCode.INVALID, "hnsw parameters are only valid for an hnsw index")
    return CollectionSpec(
        name=name,
        dimension=dimension,
        metric=str(metric),
        index=str(index),
        created_at=utc_now_iso(),
        hnsw=hnsw,
    )


def _hnsw_params(value: object) -> dict[str, int]:
    """``{m, ef_construction}`` with defaults filled in, each within its limits."""
    if value is None:
        value = {}
    if not isinstance(value, dict) or set(value) - set(HNSW_DEFAULTS):
        raise StoreError(ErrorCode.INVALID, "hnsw must be an object with m and ef_construction")
    params = {**HNSW_DEFAULTS, **{k: v for k, v in value.items() if v is not None}}
    for key, (low, high) in HNSW_LIMITS.items():
        number = params[key]
        if not isinstance(number, int) or isinstance(number, bool) or not low <= number <= high:
            raise StoreError(
                ErrorCode.INVALID, f"hnsw.{key} must be an integer from {low} to {high}"
            )
    return params
