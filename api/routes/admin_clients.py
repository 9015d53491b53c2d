"""Admin plane: clients and their API keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.deps import AccountsDep, AdminActor, DataPlaneDep
from api.errors import Invalid, NotFound
from api.schemas_admin import (
    ApiKeyListOut,
    ApiKeyOut,
    BillingRequest,
    ChangeTierRequest,
    ClientDetailOut,
    ClientListOut,
    ClientOut,
    CreateClientRequest,
    EventOut,
    IssuedKeyOut,
    IssueKeyRequest,
    event_out,
)
from coordinator.accounts import (
    ApiKeyNotFound,
    ChangeTier,
    ClientNotFound,
    ClientView,
    CreateClient,
    DeleteClient,
    InvalidCommand,
    IssueApiKey,
    RecordBilling,
    RevokeApiKey,
)

router = APIRouter(prefix="/admin/v1", tags=["admin: clients"])

ClientIdPath = Annotated[str, Path(max_length=64, description="The client's id, e.g. c3f2a9...")]
KeyIdPath = Annotated[str, Path(max_length=64, description="The key's 16-character id")]


@contextmanager
def domain_errors() -> Iterator[None]:
    """Answer domain errors with the documented API errors."""
    try:
        yield
    except ClientNotFound:
        raise NotFound("client not found") from None
    except ApiKeyNotFound:
        raise NotFound("API key not found") from None
    except InvalidCommand as exc:
        raise Invalid(str(exc)) from None


def _detail(view: ClientView) -> ClientDetailOut:
    return ClientDetailOut.model_validate(view, from_attributes=True)


@router.post("/clients", status_code=201, response_model=ClientOut)
async def create_client(
    body: CreateClientRequest, actor: AdminActor, accounts: AccountsDep
) -> ClientOut:
    """Create a client (status active); records ClientCreated."""
    with domain_errors():
        view = await accounts.handle(
            CreateClient(name=body.name, email=body.email, tier=body.tier, actor=actor)
        )
    return ClientOut.model_validate(view, from_attributes=True)


@router.get("/clients", response_model=ClientListOut)
async def list_clients(actor: AdminActor, accounts: AccountsDep) -> ClientListOut:
    """Every client that is not deleted, oldest first."""
    return ClientListOut(clients=[_detail(v) for v in await accounts.list_clients()])


@router.get("/clients/{client_id}", response_model=ClientDetailOut)
async def get_client(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep
) -> ClientDetailOut:
    """One client with tier and status."""
    with domain_errors():
        return _detail(await accounts.get_client(client_id))


@router.post("/clients/{client_id}/keys", status_code=201, response_model=IssuedKeyOut)
async def issue_key(
    client_id: ClientIdPath, body: IssueKeyRequest, actor: AdminActor, accounts: AccountsDep
) -> IssuedKeyOut:
    """Issue an API key; the response is the only time its secret is shown."""
    with domain_errors():
        issued = await accounts.handle(
            IssueApiKey(
                client_id=client_id, scopes=tuple(body.scopes), label=body.label, actor=actor
            )
        )
    return IssuedKeyOut(key_id=issued.key_id, api_key=issued.api_key)


@router.get("/clients/{client_id}/keys", response_model=ApiKeyListOut)
async def list_keys(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep
) -> ApiKeyListOut:
    """The client's keys, revoked ones included; never secrets or digests."""
    with domain_errors():
        keys = await accounts.list_api_keys(client_id)
    return ApiKeyListOut(
        keys=[
            ApiKeyOut(
                key_id=k.key_id,
                label=k.label,
                scopes=list(k.scopes),
                created_at=k.created_at,
                revoked_at=k.revoked_at,
            )
            for k in keys
        ]
    )


@router.delete("/clients/{client_id}/keys/{key_id}", status_code=204, response_class=Response)
async def revoke_key(
    client_id: ClientIdPath, key_id: KeyIdPath, actor: AdminActor, accounts: AccountsDep
) -> Response:
    """Revoke a key; it stops working at once in this process (others follow via events)."""
    with domain_errors():
        await accounts.handle(RevokeApiKey(client_id=client_id, key_id=key_id, actor=actor))
    return Response(status_code=204)


@router.post("/clients/{client_id}/tier", response_model=ClientOut)
async def change_tier(
    client_id: ClientIdPath, body: ChangeTierRequest, actor: AdminActor, accounts: AccountsDep
) -> ClientOut:
    """Move the client to another tier; records TierChanged (nothing if the tier is the same)."""
    with domain_errors():
        view = await accounts.handle(ChangeTier(client_id=client_id, tier=body.tier, actor=actor))
    return ClientOut.model_validate(view, from_attributes=True)


@router.post("/clients/{client_id}/billing", status_code=201, response_model=EventOut)
async def record_billing(
    client_id: ClientIdPath, body: BillingRequest, actor: AdminActor, accounts: AccountsDep
) -> EventOut:
    """Record an invoice, a payment or a failed payment; returns the recorded event."""
    with domain_errors():
        stored = await accounts.handle(
            RecordBilling(
                client_id=client_id,
                kind=body.kind,
                amount_cents=body.amount_cents,
                currency=body.currency,
                reference=body.reference,
                actor=actor,
            )
        )
    return event_out(stored)


@router.delete("/clients/{client_id}", status_code=204, response_class=Response)
async def delete_client(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep, dataplane: DataPlaneDep
) -> Response:
    """Delete the client: its keys stop at once, then its data is removed.

    Records ClientDeleted. If the data cannot be removed right now (503), the
    client stays deleted and repeating the DELETE retries the removal.
    """
    with domain_errors():
        await accounts.handle(DeleteClient(client_id=client_id, actor=actor))
    await dataplane.delete_tenant(client_id)
    return Response(status_code=204)
