"""Operators: named admin identities with their own tokens.

The bootstrap admin token (from the env file) is for creating the first
operators; each person then acts with a token of their own, so the event log
names them (actor ``operator:<name>``). Tokens look like
``vpo_<operator_id>_<secret>``; only their HMAC digest under the key pepper is
stored, exactly like API keys. A revoked operator's name is never reused, so an
actor string always means one person.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from coordinator.accounts.commands import IssueOperator, RevokeOperator
from coordinator.accounts.model import (
    AccountsError,
    InvalidCommand,
    OperatorRecord,
    digest_matches,
    key_digest,
    valid_email,
    valid_reference,
)
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from eventlog.events import OperatorIssued, OperatorRevoked

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_ID_RE = re.compile(r"[0-9a-f]{16}")
_TOKEN_RE = re.compile(r"vpo_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
MAX_TOKEN_LENGTH = 4 + 16 + 1 + 128
ACTOR_PREFIX = "operator:"


class OperatorNotFound(AccountsError):
    """No such operator."""


class OperatorNameTaken(AccountsError):
    """An operator (current or revoked) already has this name."""


@dataclass(frozen=True, slots=True)
class OperatorView:
    operator_id: str
    name: str
    email: str
    actor: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def of(cls, record: OperatorRecord) -> OperatorView:
        return cls(
            operator_id=record.operator_id,
            name=record.name,
            email=record.email,
            actor=actor_of(record.name),
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )


@dataclass(frozen=True, slots=True)
class IssuedOperator:
    """The new operator and its token: the only time the token is shown."""

    operator: OperatorView
    token: str


def actor_of(name: str) -> str:
    """How the event log names what this operator did."""
    return f"{ACTOR_PREFIX}{name}"


def valid_operator_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidCommand(
            "name must be 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a "
            "letter or digit (e.g. alice or j.smith)"
        )
    return name


def parse_token(presented: str) -> str | None:
    """The operator id of a well-formed operator token, else None."""
    if not isinstance(presented, str) or len(presented) > MAX_TOKEN_LENGTH:
        return None
    match = _TOKEN_RE.fullmatch(presented)
    return match.group(1) if match else None


async def issue_operator(
    cmd: IssueOperator, uow: AccountsUnitOfWork, pepper: bytes
) -> IssuedOperator:
    """Create an operator and its token; records OperatorIssued."""
    name, email = valid_operator_name(cmd.name), valid_email(cmd.email)

    def body(tx: AccountsTransaction) -> IssuedOperator:
        if any(o.name == name for o in tx.list_operators()):
            raise OperatorNameTaken(f"an operator named '{name}' exists or existed")
        operator_id = secrets.token_hex(8)
        while tx.get_operator(operator_id) is not None:
            operator_id = secrets.token_hex(8)
        token = f"vpo_{operator_id}_{secrets.token_urlsafe(32)}"
        record = OperatorRecord(operator_id, name, email, key_digest(pepper, token), tx.now)
        tx.add_operator(record)
        tx.append([OperatorIssued(operator_id=operator_id, name=name, email=email)], cmd.actor)
        return IssuedOperator(OperatorView.of(record), token)

    return await uow.write(body)


async def revoke_operator(cmd: RevokeOperator, uow: AccountsUnitOfWork) -> OperatorView:
    """Revoke an operator's token; revoking twice changes nothing."""
    reason = None if cmd.reason is None else valid_reference(cmd.reason)

    def body(tx: AccountsTransaction) -> OperatorView:
        record = tx.get_operator(cmd.operator_id) if _ID_RE.fullmatch(cmd.operator_id) else None
        if record is None:
            raise OperatorNotFound("no such operator")
        if record.revoked_at is not None:
            return OperatorView.of(record)
        tx.revoke_operator(record.operator_id, tx.now)
        event = OperatorRevoked(operator_id=record.operator_id, name=record.name, reason=reason)
        tx.append([event], cmd.actor)
        revoked = tx.get_operator(record.operator_id)
        assert revoked is not None
        return OperatorView.of(revoked)

    return await uow.write(body)


async def list_operators(uow: AccountsUnitOfWork) -> list[OperatorView]:
    return await uow.read(lambda tx: [OperatorView.of(o) for o in tx.list_operators()])


async def authenticate(uow: AccountsUnitOfWork, pepper: bytes, presented: str) -> str | None:
    """The actor of a valid, unrevoked operator token, or None."""
    operator_id = parse_token(presented)
    if operator_id is None:
        return None
    record = await uow.read(lambda tx: tx.get_operator(operator_id))
    if record is None or record.revoked_at is not None:
        return None
    if not digest_matches(pepper, presented, record.digest):
        return None
    return actor_of(record.name)
