"""Request and response models of list, count and update (``/v1``), as in shared/API.md."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from api.schemas import Metadata, Strict, check_vector_id
from coordinator.list_cursor import MAX_CURSOR_CHARS

MAX_LIST_LIMIT = 1000


class ListRequest(Strict):
    """One page of a walk over a collection's ids, in ascending UTF-8 byte order."""

    # Strict: the contract coerces nothing ("5" is not an integer).
    limit: StrictInt = Field(default=100, ge=1, le=MAX_LIST_LIMIT, description="ids per page")
    cursor: str | None = Field(
        default=None,
        max_length=MAX_CURSOR_CHARS,
        description="`next_cursor` of the previous page; omit for the first page",
    )
    filter: dict[str, Any] | None = None
    include_metadata: StrictBool = False
    include_values: StrictBool = False

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"limit": 100},
                {
                    "limit": 2,
                    "cursor": "AXYwMDK...",
                    "filter": {"genre": {"$in": ["jazz", "blues"]}},
                    "include_metadata": True,
                },
            ]
        },
    )


class ListedVectorOut(BaseModel):
    id: str
    metadata: dict[str, Any] | None = None
    values: list[float] | None = None


class ListResponse(BaseModel):
    vectors: list[ListedVectorOut]
    next_cursor: str | None = Field(description="null on the last page")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "vectors": [{"id": "a1", "metadata": {"genre": "jazz"}}, {"id": "a2"}],
                    "next_cursor": "AWEyi3Xb...",
                },
                {"vectors": [], "next_cursor": None},
            ]
        }
    )


class CountRequest(Strict):
    """Count every vector, or those matching ``filter``."""

    filter: dict[str, Any] | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{}, {"filter": {"year": {"$gte": 2020}}}]},
    )


class CountResponse(BaseModel):
    count: int

    model_config = ConfigDict(json_schema_extra={"examples": [{"count": 1234}]})


class UpdateRequest(Strict):
    """Change metadata without re-sending vectors: by ``ids`` or by ``filter``."""

    ids: list[str] | None = None
    filter: dict[str, Any] | None = Field(default=None, description="`{}` updates every vector")
    set: Metadata | None = Field(default=None, description="fields merged in")
    unset: list[str] | None = Field(default=None, description="fields removed")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"ids": ["a1", "a2"], "set": {"reviewed": True}, "unset": ["draft"]},
                {"filter": {"genre": "jazz"}, "set": {"shelf": "music"}},
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
    def _one_form(self) -> UpdateRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("send either 'ids' or 'filter'")
        if not self.set and not self.unset:
            raise ValueError("send 'set' and/or 'unset' with at least one field")
        return self


class UpdateResponse(BaseModel):
    updated: int = Field(description="vectors matched (missing ids are not counted)")

    model_config = ConfigDict(json_schema_extra={"examples": [{"updated": 2}]})
