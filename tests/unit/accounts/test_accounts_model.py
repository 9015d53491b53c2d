"""Accounts model: key format and parsing, digests, ids and validation rules."""

from __future__ import annotations

import re

import pytest

from coordinator.accounts.model import (
    ApiKeyNotFound,
    ApiKeyRecord,
    ClientNotFound,
    ClientRecord,
    ClientStatus,
    InvalidCommand,
    Scope,
    Tier,
    digest_matches,
    key_digest,
    live_client,
    needs_revocation,
    new_api_key,
    new_client_id,
    new_key_id,
    parse_api_key,
    principal_for,
    valid_email,
    valid_label,
    valid_name,
    valid_scopes,
)

PEPPER = b"pepper-for-tests-0123456789"


def test_new_api_key_has_the_documented_shape_and_parses_back() -> None:
    key_id = new_key_id()
    assert re.fullmatch(r"[0-9a-f]{16}", key_id)
    api_key = new_api_key(key_id)
    assert api_key.startswith(f"vp_{key_id}_")
    parsed = parse_api_key(api_key)
    assert parsed is not None and parsed[0] == key_id
    assert len(parsed[1]) == 43  # token_urlsafe(32)
    assert new_api_key(key_id) != api_key


def test_secret_may_itself_contain_underscores_and_dashes() -> None:
    presented = "vp_0123456789abcdef_" + "_-" * 20 + "abc"
    assert parse_api_key(presented) == ("0123456789abcdef", "_-" * 20 + "abc")


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "vp_",
        "vp_0123456789abcdef_",
        "vp_0123456789abcdef_short",
        "vp_0123456789ABCDEF_" + "a" * 43,  # uppercase key id
        "vp_0123456789abcde_" + "a" * 43,  # 15-char key id
        "vp_0123456789abcdeff_" + "a" * 43,  # 17-char key id
        "VP_0123456789abcdef_" + "a" * 43,
        "xp_0123456789abcdef_" + "a" * 43,
        " vp_0123456789abcdef_" + "a" * 43,
        "vp_0123456789abcdef_" + "a" * 43 + "\n",
        "vp_0123456789abcdef_" + "a" * 43 + " ",
        "vp_0123456789abcdef_" + "a" * 20 + "=" + "a" * 22,
        "vp_0123456789abcdef_" + "a" * 20 + "é" + "a" * 22,
        "vp_0123456789abcdef_" + "a" * 129,
        "vp_0123456789abcdef_" + "a" * 100_000,
    ],
)
def test_malformed_keys_are_refused(presented: str) -> None:
    assert parse_api_key(presented) is None


def test_digest_is_keyed_hmac_sha256() -> None:
    key = new_api_key(new_key_id())
    digest = key_digest(PEPPER, key)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == key_digest(PEPPER, key)
    assert digest != key_digest(b"another-pepper-entirely-000", key)
    assert digest_matches(PEPPER, key, digest)
    assert not digest_matches(PEPPER, key[:-1] + ("A" if key[-1] != "A" else "B"), digest)


def test_client_ids_are_valid_directory_names() -> None:
    ids = {new_client_id() for _ in range(100)}
    assert len(ids) == 100
    for client_id in ids:
        assert re.fullmatch(r"c[0-9a-f]{16}", client_id)
        assert re.fullmatch(r"^[a-z0-9][a-z0-9_]{0,63}$", client_id)


def test_scopes_are_a_non_empty_subset_in_canonical_order() -> None:
    assert valid_scopes(["manage", "read", "read"]) == (Scope.READ, Scope.MANAGE)
    with pytest.raises(InvalidCommand):
        valid_scopes([])
    with pytest.raises(InvalidCommand):
        valid_scopes(["read", "admin"])


@pytest.mark.parametrize("email", ["a@b.co", "first.last+tag@sub.example.org"])
def test_plausible_emails_pass(email: str) -> None:
    assert valid_email(f"  {email} ") == email


@pytest.mark.parametrize(
    "email", ["", "a", "a@b", "a@@b.co", "a b@c.de", "@b.co", "a@b.", "x" * 250 + "@b.co"]
)
def test_implausible_emails_fail(email: str) -> None:
    with pytest.raises(InvalidCommand):
        valid_email(email)


def test_names_and_labels_are_trimmed_and_bounded() -> None:
    assert valid_name("  Acme ") == "Acme"
    assert valid_label(None) is None
    for bad in ["", "   ", "x" * 201, "bell\x07"]:
        with pytest.raises(InvalidCommand):
            valid_name(bad)
    with pytest.raises(InvalidCommand):
        valid_label("x" * 101)


def _client(status: ClientStatus = ClientStatus.ACTIVE) -> ClientRecord:
    return ClientRecord("c1", "A", "a@b.co", Tier.STANDARD, status, "t0")


def _key(revoked_at: str | None = None) -> ApiKeyRecord:
    return ApiKeyRecord("k" * 16, "c1", None, (Scope.READ,), "d" * 64, "t0", revoked_at)


def test_deleted_and_missing_clients_are_not_found() -> None:
    assert live_client(_client(ClientStatus.PAUSED)).status is ClientStatus.PAUSED
    for client in (None, _client(ClientStatus.DELETED)):
        with pytest.raises(ClientNotFound):
            live_client(client)


def test_revocation_decisions() -> None:
    assert needs_revocation(_key(), "c1") is True
    assert needs_revocation(_key(revoked_at="t1"), "c1") is False
    with pytest.raises(ApiKeyNotFound):
        needs_revocation(_key(), "c2")  # another client's key looks like no key
    with pytest.raises(ApiKeyNotFound):
        needs_revocation(None, "c1")


def test_principal_only_for_live_keys_of_existing_clients() -> None:
    principal = principal_for(_key(), _client(ClientStatus.PAUSED))
    assert principal is not None
    assert principal.scopes == frozenset({"read"}) and principal.status == "paused"
    assert principal.tier == "standard"
    assert principal_for(_key(revoked_at="t1"), _client()) is None
    assert principal_for(_key(), _client(ClientStatus.DELETED)) is None
    assert "d" * 64 not in repr(principal)
