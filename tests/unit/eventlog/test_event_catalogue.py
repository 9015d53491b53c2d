"""The event catalogue: names, routing keys, encoding and upcasting."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pydantic
import pytest

from eventlog.events import (
    CATALOGUE,
    EVENT_TYPES,
    ApiKeyIssued,
    ApiKeyRevoked,
    ClientCreated,
    ClientEvent,
    UnknownEventType,
    UnknownEventVersion,
    client_id_of,
    decode_event,
    encode_event,
)

REQUIRED = {"client.created", "api_key.issued", "api_key.revoked"}


def test_every_event_type_is_a_unique_routing_key() -> None:
    assert set(EVENT_TYPES) >= REQUIRED
    assert len(EVENT_TYPES) == len(CATALOGUE)
    for name, cls in EVENT_TYPES.items():
        # AMQP topic words: lowercase, dot separated, no wildcards.
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", name), name
        assert cls.schema_version >= 1
        assert re.search(r"(ed|en|Taken|Issued)$", cls.__name__), f"{cls.__name__} not past tense"


def test_client_events_require_a_valid_client_id() -> None:
    with pytest.raises(pydantic.ValidationError):
        ApiKeyRevoked(client_id="../etc", key_id="0" * 16)
    with pytest.raises(pydantic.ValidationError):
        ApiKeyRevoked(key_id="0" * 16)  # type: ignore[call-arg]


def test_events_are_frozen_and_reject_unknown_fields() -> None:
    ev = ApiKeyRevoked(client_id="c1", key_id="0" * 16)
    with pytest.raises(pydantic.ValidationError):
        ev.key_id = "1" * 16  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        ApiKeyRevoked(client_id="c1", key_id="0" * 16, secret="x")  # type: ignore[call-arg]


def test_key_issued_has_no_place_for_a_secret_or_digest() -> None:
    assert set(ApiKeyIssued.model_fields) == {
        "client_id",
        "key_id",
        "scopes",
        "label",
        "expires_at",
        "allowed_cidrs",
    }


def test_encode_keeps_client_id_out_of_data_and_decode_restores_it() -> None:
    ev = ClientCreated(client_id="cabc", name="A", email="a@b.co", tier="premium")
    data = encode_event(ev)
    assert data == {"name": "A", "email": "a@b.co", "tier": "premium"}
    assert decode_event("client.created", 1, data, "cabc") == ev
    assert client_id_of(ev) == "cabc"


def test_unknown_type_and_future_version_are_refused() -> None:
    with pytest.raises(UnknownEventType):
        decode_event("client.renamed", 1, {}, "c1")
    with pytest.raises(UnknownEventVersion):
        decode_event("api_key.revoked", 2, {"key_id": "0" * 16}, "c1")


class LabelledRevoked(ClientEvent):
    """A v3 event whose history renamed a field (v1) and added one (v2)."""

    event_type: ClassVar[str] = "test.key_revoked"
    schema_version: ClassVar[int] = 3
    key_id: str
    reason: str


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"key_id": data["key"]}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "reason": "unspecified"}


def test_old_versions_are_upcast_step_by_step_on_read() -> None:
    catalogue = {LabelledRevoked.event_type: LabelledRevoked}
    upcasters = {("test.key_revoked", 1): _v1_to_v2, ("test.key_revoked", 2): _v2_to_v3}
    stored_v1 = {"key": "k1"}
    ev = decode_event(
        "test.key_revoked", 1, stored_v1, "c1", catalogue=catalogue, upcasters=upcasters
    )
    assert ev == LabelledRevoked(client_id="c1", key_id="k1", reason="unspecified")
    assert stored_v1 == {"key": "k1"}  # the stored data is never rewritten
    with pytest.raises(UnknownEventVersion):
        decode_event("test.key_revoked", 1, stored_v1, "c1", catalogue=catalogue, upcasters={})
