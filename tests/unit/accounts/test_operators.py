"""Operators: own tokens stored as digests, unique names, revocation, and their events."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.accounts import (
    Accounts,
    InvalidCommand,
    IssueOperator,
    OperatorNameTaken,
    OperatorNotFound,
    RevokeOperator,
)

PEPPER = b"operator-pepper-0123456789abcdef"


@pytest.fixture(params=["memory", "sqlite"])
def accounts(request: pytest.FixtureRequest, tmp_path: Path) -> Accounts:
    if request.param == "memory":
        return Accounts.in_memory(PEPPER)
    return Accounts(tmp_path / "control.sqlite3", PEPPER)


async def test_token_names_its_operator_and_only_a_digest_is_kept(
    accounts: Accounts, tmp_path: Path
) -> None:
    issued = await accounts.handle(IssueOperator("alice", "alice@ops.example"))
    assert issued.token.startswith(f"vpo_{issued.operator.operator_id}_")
    assert await accounts.operator_actor(issued.token) == "operator:alice"
    assert await accounts.operator_actor(issued.token[:-1] + "x") is None
    assert await accounts.operator_actor("vp_0123456789abcdef_" + "a" * 43) is None
    db = tmp_path / "control.sqlite3"
    if db.exists():
        assert issued.token.encode() not in db.read_bytes()
    (event,) = await accounts.list_events(type="operator.issued")
    assert event.actor == "admin"
    assert event.data == {
        "operator_id": issued.operator.operator_id,
        "name": "alice",
        "email": "alice@ops.example",
    }
    assert issued.token not in str(event.data)


async def test_names_are_unique_forever_and_well_formed(accounts: Accounts) -> None:
    bob = await accounts.handle(IssueOperator("bob", "bob@ops.example"))
    await accounts.handle(RevokeOperator(bob.operator.operator_id, reason="left"))
    with pytest.raises(OperatorNameTaken):
        await accounts.handle(IssueOperator("bob", "other@ops.example"))
    for bad in ("Bob", "", "bob smith", "-bob", "b" * 64):
        with pytest.raises(InvalidCommand):
            await accounts.handle(IssueOperator(bad, "x@ops.example"))
    with pytest.raises(InvalidCommand):
        await accounts.handle(IssueOperator("carol", "not-an-email"))
    assert [o.name for o in await accounts.list_operators()] == ["bob"]


async def test_revoking_stops_the_token_once_and_records_who(accounts: Accounts) -> None:
    alice = await accounts.handle(IssueOperator("alice", "alice@ops.example"))
    carol = await accounts.handle(IssueOperator("carol", "carol@ops.example", actor="admin"))
    cmd = RevokeOperator(carol.operator.operator_id, actor="operator:alice", reason="rotated")
    view = await accounts.handle(cmd)
    assert view.revoked_at is not None
    assert await accounts.operator_actor(carol.token) is None
    assert await accounts.operator_actor(alice.token) == "operator:alice"
    again = await accounts.handle(cmd)
    assert again.revoked_at == view.revoked_at
    revoked = await accounts.list_events(type="operator.revoked")
    assert [(e.actor, e.data["name"], e.data["reason"]) for e in revoked] == [
        ("operator:alice", "carol", "rotated")
    ]
    with pytest.raises(OperatorNotFound):
        await accounts.handle(RevokeOperator("0123456789abcdef"))
    with pytest.raises(OperatorNotFound):
        await accounts.handle(RevokeOperator("../etc"))
