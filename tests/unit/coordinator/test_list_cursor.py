"""Listing cursors open only for the client and collection they were issued to."""

from __future__ import annotations

import base64

import pytest

from coordinator.list_cursor import CursorError, ListCursors

PEPPER = b"p" * 32


def test_a_cursor_opens_to_its_id_under_any_instance_of_the_same_pepper() -> None:
    cursor = ListCursors.from_pepper(PEPPER).issue("client_a", "docs", "id-é-😀")
    assert ListCursors.from_pepper(PEPPER).open("client_a", "docs", cursor) == "id-é-😀"
    assert cursor.isascii() and "=" not in cursor


@pytest.mark.parametrize(
    ("client", "collection", "pepper"),
    [
        ("client_b", "docs", PEPPER),  # another client
        ("client_a", "other", PEPPER),  # another collection
        ("client_a", "docs", b"q" * 32),  # another server key
    ],
)
def test_a_foreign_cursor_is_refused(client: str, collection: str, pepper: bytes) -> None:
    cursor = ListCursors.from_pepper(PEPPER).issue("client_a", "docs", "v1")
    with pytest.raises(CursorError):
        ListCursors.from_pepper(pepper).open(client, collection, cursor)


def test_forged_and_malformed_cursors_are_refused() -> None:
    cursors = ListCursors.from_pepper(PEPPER)
    cursor = cursors.issue("client_a", "docs", "v100")
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[2] ^= 1  # another id under the same MAC
    forged = base64.urlsafe_b64encode(bytes(raw)).decode()
    # Moving bytes between the id and the MAC must not make a valid cursor either.
    shifted = base64.urlsafe_b64encode(b"\x01" + bytes(raw[1:-1])).decode()
    for bad in [forged, shifted, "", "!!!", "AQ", "A" * 5000, "é", cursor[:-2], "x" + cursor]:
        with pytest.raises(CursorError):
            cursors.open("client_a", "docs", bad)
