"""Request and response models of the data plane (``/v1``), as in shared/API.md."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MetadataValue = str | int | float | bool | list[str]


def _is_metadata_value(value: object) -> bool:
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    return isinstance(value, str | int | float | bool)


def _flat_metadata(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One clear sentence for a nested value, instead of a dump of every union member."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not _is_metadata_value(item):
                raise PydanticCustomError(
                    "metadata_value",
                    "metadata is a flat object of strings, numbers, booleans and lists of "
                    "strings; the value of '{key}' is none of these",
                    {"key": str(key)[:64]},
                )
    return handler(value)


Metadata = Annotated[dict[str, MetadataValue], WrapValidator(_flat_metadata)]


def check_vector_id(value: str) -> str:
    """Ids are 1-256 bytes of UTF-8."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= 256:
        raise ValueError("vector ids must be 1 to 256 bytes of UTF-8")
    return value


class Strict(BaseModel):
    """Unknown fields are rejected everywhere, and no value is coerced (``"5"`` is no int)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class HnswParams(Strict):
    m: int = Field(default=32, ge=4, le=128)
    ef_construction: int = Field(default=200, ge=8, le=2000)


class CreateCollection(Strict):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"name": "products", "dimension": 384, "metric": "cosine", "index": "flat"},
                {
                    "name": "articles",
                    "dimension": 768,
                    "metric": "ip",
                    "index": "hnsw",
                    "hnsw": {"m": 16, "ef_construction": 200},
                },
            ]
        },
    )

    name: str = Field(examples=["products"], description=f"Matches {NAME_PATTERN}")
    dimension: int = Field(ge=1, examples=[384])
    metric: Literal["cosine", "l2", "ip"] = "cosine"
    index: Literal["flat", "hnsw"] = "flat"
    hnsw: HnswParams | None = None
    from_snapshot: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="Restore a snapshot of one of the caller's collections into this new "
        "collection; dimension, metric and index must match the snapshot's.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"collection names must match {NAME_PATTERN}")
        return value


class Collection(BaseModel):
    name: str
    dimension: int
    metric: str
    index: str
    vector_count: int
    created_at: str
    hnsw: HnswParams | None = None


class CollectionList(BaseModel):
    collections: list[Collection]


class CollectionIndexing(BaseModel):
    """How much of a collection its index holds (after a bulk import, until it is whole)."""

    name: str
    index: str
    vector_count: int
    indexed: int = Field(description="Vectors in the HNSW graph (all of them for flat).")
    pending: int = Field(
        description="Vectors waiting to be inserted into the graph; searched exactly "
        "meanwhile, so every query already finds them."
    )
    fully_indexed: bool


class VectorIn(Strict):
    id: str
    values: list[FiniteFloat]
    metadata: Metadata | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_vector_id(value)


def first_repeat(ids: list[str]) -> str | None:
    """The first id that occurs a second time, or None when all are distinct."""
    seen: set[str] = set()
    for vid in ids:
        if vid in seen:
            return vid
        seen.add(vid)
    return None


class UpsertRequest(Strict):
    """Either ``vectors`` (JSON rows) or ``ids`` + ``values_b64`` (+ ``metadata``)."""

    vectors: list[VectorIn] | None = None
    ids: list[str] | None = None
    values_b64: str | None = Field(
        default=None, description="little-endian float32, row-major, base64"
    )
    metadata: list[Metadata | None] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"vectors": [{"id": "a", "values": [0.1, 0.2, 0.3], "metadata": {"k": "v"}}]},
                {"ids": ["a"], "values_b64": "zczMPc3MTD6amZk+"},
            ]
        },
    )

    @field_validator("ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        for vid in value or []:
            check_vector_id(vid)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> UpsertRequest:
        rows = self.vectors is not None
        packed = self.ids is not None or self.values_b64 is not None
        if rows == packed:
            raise ValueError("send either 'vectors' or 'ids' with 'values_b64'")
        if packed and (self.ids is None or self.values_b64 is None):
            raise ValueError("'ids' and 'values_b64' go together")
        if rows and self.metadata is not None:
            raise ValueError("'metadata' as a list goes with 'ids'; put it in each vector")
        if (
            self.metadata is not None
            and self.ids is not None
            and len(self.metadata) != len(self.ids)
        ):
            raise ValueError("'metadata' must have one entry per id")
        ids = self.ids if self.ids is not None else [v.id for v in self.vectors or []]
        repeated = first_repeat(ids)
        if repeated is not None:
            raise ValueError(
                f"id {repeated!r} appears more than once in this upsert; "
                "ids within one upsert must be unique"
            )
        return self


class UpsertResponse(BaseModel):
    upserted: int


class QueryRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"vector": [0.1, 0.2, 0.3], "top_k": 5, "include_metadata": True},
                {
                    "vector": [0.1, 0.2, 0.3],
                    "top_k": 10,
                    "filter": {"$and": [{"lang": "en"}, {"year": {"$gte": 2023}}]},
                },
                {"vectors": [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], "top_k": 3},
            ]
        },
    )

    vector: list[FiniteFloat] | None = None
    vectors: list[list[FiniteFloat]] | None = None
    top_k: int = Field(default=10, ge=1)
    filter: dict[str, Any] | None = None
    include_metadata: StrictBool = False
    include_values: StrictBool = False
    ef_search: int | None = Field(default=None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _one_form(self) -> QueryRequest:
        if (self.vector is None) == (self.vectors is None):
            raise ValueError("send either 'vector' or 'vectors'")
        if self.vectors is not None and not self.vectors:
            raise ValueError("'vectors' must not be empty")
        return self


class MatchOut(BaseModel):
    id: str
    score: float
    metadata: dict[str, Any] | None = None
    values: list[float] | None = None


class QueryResponse(BaseModel):
    matches: list[MatchOut]


class BatchQueryResult(BaseModel):
    matches: list[MatchOut]


class BatchQueryResponse(BaseModel):
    results: list[BatchQueryResult]


class IdsRequest(Strict):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"ids": ["doc-1", "doc-2"]}]}
    )

    ids: list[str]

    @field_validator("ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for vid in value:
            check_vector_id(vid)
        return value


class DeleteRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"ids": ["doc-1", "doc-2"]}, {"filter": {"lang": {"$in": ["de", "fr"]}}}]
        },
    )

    ids: list[str] | None = None
    filter: dict[str, Any] | None = None

    @field_validator("ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        for vid in value or []:
            check_vector_id(vid)
        return value

    @model_validator(mode="after")
    def _one_form(self) -> DeleteRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("send either 'ids' or 'filter'")
        return self


class FetchedOut(BaseModel):
    values: list[float]
    metadata: dict[str, Any] | None = None


class FetchResponse(BaseModel):
    vectors: dict[str, FetchedOut]


class DeleteResponse(BaseModel):
    deleted: int


class UsageLimits(BaseModel):
    max_dimension: int
    max_upsert_vectors: int
    max_top_k: int
    max_metadata_bytes: int
    max_body_bytes: int


class UsageResponse(BaseModel):
    client_id: str
    tier: str
    status: str
    collections: int
    vectors: int
    bytes: int
    limits: UsageLimits
