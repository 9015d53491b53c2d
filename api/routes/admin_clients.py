"""Admin plane: clients and their API keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    AccountsDep,
    AdminActor,
    DataKeysDep,
    DataPlaneDep,
    OptionalPauseDep,
    TenantFilesDep,
)
from api.errors import Invalid, NotFound
from api.routing import OrjsonRoute
from api.schemas_admin import (
    AdminRequest,
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
    ReasonRequest,
    event_out,
)
from coordinator.accounts import (
    Accounts,
    ApiKeyNotFound,
    ChangeTier,
    ClientNotFound,
    ClientView,
    CreateClient,
    DeleteClient,
    InvalidCommand,
    IssueApiKey,
    LinkLoginEmail,
    RecordBilling,
    RevokeApiKey,
)
from coordinator.accounts.model import valid_client_id
from coordinator.pause import PauseService, TenantFiles
from coordinator.usage import usage_since
from eventlog.events import ClientStatus
from eventlog.records import utc_now

router = APIRouter(prefix="/admin/v1", tags=["admin: clients"], route_class=OrjsonRoute)

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
    body: CreateClientRequest, actor: AdminActor, accounts: AccountsDep, data_keys: DataKeysDep
) -> ClientOut:
    """Create a client (status active) with its own data key; records ClientCreated."""
    with domain_errors():
        view = await accounts.handle(
            CreateClient(name=body.name, email=body.email, tier=body.tier, actor=actor)
        )
    if data_keys is not None:  # its data key, wrapped (else made at its first assignment)
        await data_keys.ensure(view.client_id)
    return ClientOut.model_validate(view, from_attributes=True)


@router.get("/clients", response_model=ClientListOut)
async def list_clients(actor: AdminActor, accounts: AccountsDep) -> ClientListOut:
    """Every client that is not deleted, oldest first."""
    return ClientListOut(clients=[_detail(v) for v in await accounts.list_clients()])


@router.get("/clients/{client_id}", response_model=ClientDetailOut)
async def get_client(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep, pause: OptionalPauseDep
) -> ClientDetailOut:
    """One client with tier, status and usage (last 24 h metered; where its data is)."""
    with domain_errors():
        detail = _detail(await accounts.get_client(client_id))
    detail.usage = await _usage_of(pause, accounts, detail)
    return detail


async def _usage_of(
    pause: PauseService | None, accounts: Accounts, detail: ClientDetailOut
) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(days=1)
    rows = [r for r in await usage_since(accounts, since) if r["client_id"] == detail.client_id]
    usage: dict[str, Any] = {"last_24h": rows[0] if rows else None, "storage": None}
    if pause is not None and detail.status == ClientStatus.PAUSED:
        # A paused client's data is shown from its cold copy, without loading it.
        with suppress(Exception):
            usage["storage"] = await pause.storage(detail.client_id)
    return usage


@router.post("/clients/{client_id}/keys", status_code=201, response_model=IssuedKeyOut)
async def issue_key(
    client_id: ClientIdPath, body: IssueKeyRequest, actor: AdminActor, accounts: AccountsDep
) -> IssuedKeyOut:
    """Issue an API key; the response is the only time its secret is shown."""
    with domain_errors():
        issued = await accounts.handle(
            IssueApiKey(
                client_id=client_id,
                scopes=tuple(body.scopes),
                label=body.label,
                actor=actor,
                expires_at=body.expiry(),
                allowed_cidrs=tuple(body.allowed_cidrs or ()),
            )
        )
    return IssuedKeyOut(key_id=issued.key_id, api_key=issued.api_key, expires_at=issued.expires_at)


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
                expires_at=k.expires_at,
                allowed_cidrs=list(k.allowed_cidrs),
                last_used_at=k.last_used_at,
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


async def change_tier_answer(
    accounts: Accounts, client_id: str, body: ChangeTierRequest, actor: str
) -> ClientOut:
    """A tier change and its answer: the route's and the lean path's (api/lean_admin.py)."""
    with domain_errors():
        view = await accounts.handle(
            ChangeTier(client_id=client_id, tier=body.tier, actor=actor, reason=body.reason)
        )
    return ClientOut.model_validate(view, from_attributes=True)


async def record_billing_answer(
    accounts: Accounts, client_id: str, body: BillingRequest, actor: str
) -> EventOut:
    """A billing record and its answer: the route's and the lean path's (api/lean_admin.py)."""
    with domain_errors():
        stored = await accounts.handle(
            RecordBilling(
                client_id=client_id,
                kind=body.kind,
                amount_cents=body.amount_cents,
                currency=body.currency,
                reference=body.reference,
                actor=actor,
                reason=body.reason,
            )
        )
    return event_out(stored)


@router.post("/clients/{client_id}/tier", response_model=ClientOut)
async def change_tier(
    client_id: ClientIdPath, body: ChangeTierRequest, actor: AdminActor, accounts: AccountsDep
) -> ClientOut:
    """Move the client to another tier; records TierChanged (nothing if the tier is the same)."""
    return await change_tier_answer(accounts, client_id, body, actor)


@router.post("/clients/{client_id}/billing", status_code=201, response_model=EventOut)
async def record_billing(
    client_id: ClientIdPath, body: BillingRequest, actor: AdminActor, accounts: AccountsDep
) -> EventOut:
    """Record an invoice, a payment or a failed payment; returns the recorded event."""
    return await record_billing_answer(accounts, client_id, body, actor)


@router.delete("/clients/{client_id}", status_code=204, response_class=Response)
async def delete_client(
    client_id: ClientIdPath,
    actor: AdminActor,
    accounts: AccountsDep,
    dataplane: DataPlaneDep,
    pause: OptionalPauseDep,
    tenant_files: TenantFilesDep,
    body: ReasonRequest | None = None,
    reason: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
) -> Response:
    """Delete the client: its keys stop at once, then its data is removed.

    A reason is required, as ``?reason=`` or a ``{"reason"}`` body (not both).
    Records ClientDeleted. If the data cannot be removed right now (503), the
    client stays deleted and repeating the DELETE retries the removal.
    """
    if (body is None) == (reason is None):
        raise Invalid('give a reason, as ?reason=... or a {"reason"} body (not both)')
    why = body.reason if body is not None else reason
    # The files are hashed first, for the receipt; the data keys are destroyed in the same
    # commit as client.deleted (from then on no copy anywhere can be decrypted).
    files, hashed_at = await _hash_files(tenant_files, client_id)
    with domain_errors():
        await accounts.handle(
            DeleteClient(
                client_id=client_id,
                actor=actor,
                reason=why,
                files=files,
                files_hashed_at=hashed_at,
            )
        )
    if pause is not None:  # a paused client's data is in cold storage
        await pause.purge_cold(client_id)
    await dataplane.delete_tenant(client_id)
    return Response(status_code=204)


async def _hash_files(
    files: TenantFiles | None, client_id: str
) -> tuple[tuple[tuple[str, str], ...], str]:
    """The client's files (hot and cold) and the SHA-256 of each, with the time taken."""
    hashed_at = utc_now()
    if files is None or not valid_client_id(client_id):
        return (), hashed_at
    found = await files.digests(client_id)
    return tuple((f["path"], f["sha256"]) for f in found), hashed_at


class LinkLoginEmailRequest(AdminRequest):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "ops-team@acme.example"}]}
    )

    email: str = Field(max_length=254, examples=["ops-team@acme.example"])


class LoginEmailsOut(BaseModel):
    client_id: str
    contact_email: str
    login_emails: list[str]


@router.post("/clients/{client_id}/login-emails", status_code=201, response_model=LoginEmailsOut)
async def link_login_email(
    client_id: ClientIdPath, body: LinkLoginEmailRequest, actor: AdminActor, accounts: AccountsDep
) -> LoginEmailsOut:
    """Let a (provider-verified) email sign in to this client's dashboard; records an event."""
    with domain_errors():
        await accounts.handle(LinkLoginEmail(client_id=client_id, email=body.email, actor=actor))
        return await _login_emails(accounts, client_id)


@router.get("/clients/{client_id}/login-emails", response_model=LoginEmailsOut)
async def list_login_emails(
    client_id: ClientIdPath, actor: AdminActor, accounts: AccountsDep
) -> LoginEmailsOut:
    """Who may sign in to this client's dashboard: the contact email and linked ones."""
    with domain_errors():
        return await _login_emails(accounts, client_id)


async def _login_emails(accounts: Accounts, client_id: str) -> LoginEmailsOut:
    client = await accounts.get_client(client_id)
    linked = await accounts.login_emails(client_id)
    return LoginEmailsOut(client_id=client_id, contact_email=client.email, login_emails=linked)
