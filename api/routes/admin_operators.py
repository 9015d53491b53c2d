"""Admin plane: operators, the named admin identities (issue, list, revoke).

Any admin may issue and revoke operators; the bootstrap token from the env file
exists to create the first ones. Issuing and revoking are events themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AccountsDep, AdminActor
from api.errors import Conflict, Invalid, NotFound
from api.routing import OrjsonRoute
from api.schemas_admin import EMAIL_PATTERN, AdminRequest
from coordinator.accounts import (
    InvalidCommand,
    IssueOperator,
    OperatorNameTaken,
    OperatorNotFound,
    OperatorView,
    RevokeOperator,
)

router = APIRouter(prefix="/admin/v1", tags=["admin: operators"], route_class=OrjsonRoute)

OperatorIdPath = Annotated[str, Path(max_length=64, description="The operator's 16-hex id")]


class CreateOperatorRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "alice", "email": "alice@ops.example"}]},
    )

    name: str = Field(min_length=1, max_length=63, description="a-z, 0-9, '.', '_', '-'")
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)


class RevokeOperatorRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "left the company"}]}
    )

    reason: str | None = Field(default=None, min_length=1, max_length=200)


class OperatorOut(BaseModel):
    operator_id: str
    name: str
    email: str
    actor: str = Field(description="How the event log names this operator's actions")
    created_at: str
    revoked_at: str | None


class IssuedOperatorOut(OperatorOut):
    token: str = Field(description="The operator's admin token; shown only in this response")


class OperatorListOut(BaseModel):
    operators: list[OperatorOut]


def _out(view: OperatorView) -> OperatorOut:
    return OperatorOut.model_validate(view, from_attributes=True)


@contextmanager
def operator_errors() -> Iterator[None]:
    try:
        yield
    except OperatorNotFound:
        raise NotFound("operator not found") from None
    except OperatorNameTaken as exc:
        raise Conflict(str(exc)) from None
    except InvalidCommand as exc:
        raise Invalid(str(exc)) from None


@router.post("/operators", status_code=201, response_model=IssuedOperatorOut)
async def create_operator(
    body: CreateOperatorRequest, actor: AdminActor, accounts: AccountsDep
) -> IssuedOperatorOut:
    """Issue an operator and its token (the only time it is shown); records OperatorIssued."""
    with operator_errors():
        issued = await accounts.handle(IssueOperator(name=body.name, email=body.email, actor=actor))
    return IssuedOperatorOut(**_out(issued.operator).model_dump(), token=issued.token)


@router.get("/operators", response_model=OperatorListOut)
async def list_operators(actor: AdminActor, accounts: AccountsDep) -> OperatorListOut:
    """Every operator, revoked ones included; never tokens or digests."""
    return OperatorListOut(operators=[_out(v) for v in await accounts.list_operators()])


@router.delete("/operators/{operator_id}", response_model=OperatorOut)
async def revoke_operator(
    operator_id: OperatorIdPath,
    actor: AdminActor,
    accounts: AccountsDep,
    body: RevokeOperatorRequest | None = None,
) -> OperatorOut:
    """Revoke an operator's token (it stops working at once); records OperatorRevoked."""
    reason = body.reason if body is not None else None
    with operator_errors():
        view = await accounts.handle(
            RevokeOperator(operator_id=operator_id, actor=actor, reason=reason)
        )
    return _out(view)
