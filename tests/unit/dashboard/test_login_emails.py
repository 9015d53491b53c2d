"""Which client a dashboard login belongs to: contact email, or an admin-linked one."""

from __future__ import annotations

import pytest

from coordinator.accounts import (
    Accounts,
    ClientNotFound,
    CreateClient,
    DeleteClient,
    InvalidCommand,
    LinkLoginEmail,
)

PEPPER = b"p" * 32


async def test_contact_and_linked_emails_sign_in_case_insensitively() -> None:
    accounts = Accounts.in_memory(PEPPER)
    acme = await accounts.handle(CreateClient("acme", "Billing@Acme.example"))
    assert await accounts.client_for_login_email(" billing@acme.EXAMPLE ") == acme.client_id
    assert await accounts.client_for_login_email("dev@acme.example") is None

    await accounts.handle(LinkLoginEmail(acme.client_id, "Dev@Acme.example", actor="ops@vp.test"))
    assert await accounts.client_for_login_email("dev@acme.example") == acme.client_id
    assert await accounts.login_emails(acme.client_id) == ["dev@acme.example"]
    (event,) = await accounts.list_events(type="client.login_email_linked")
    assert event.actor == "ops@vp.test" and event.client_id == acme.client_id
    assert event.data["email"] == "dev@acme.example"

    # Linking again records nothing new.
    await accounts.handle(LinkLoginEmail(acme.client_id, "dev@acme.example"))
    assert len(await accounts.list_events(type="client.login_email_linked")) == 1


async def test_one_email_signs_in_to_one_client_and_deleted_clients_to_none() -> None:
    accounts = Accounts.in_memory(PEPPER)
    a = await accounts.handle(CreateClient("a", "a@x.example"))
    b = await accounts.handle(CreateClient("b", "b@x.example"))
    with pytest.raises(InvalidCommand):
        await accounts.handle(LinkLoginEmail(b.client_id, "a@x.example"))
    with pytest.raises(InvalidCommand):
        await accounts.handle(LinkLoginEmail(b.client_id, "not an email"))
    with pytest.raises(ClientNotFound):
        await accounts.handle(LinkLoginEmail("c" * 17, "z@x.example"))
    await accounts.handle(LinkLoginEmail(b.client_id, "shared@x.example"))
    await accounts.handle(DeleteClient(b.client_id))
    assert await accounts.client_for_login_email("shared@x.example") is None
    assert await accounts.client_for_login_email("b@x.example") is None
    assert await accounts.client_for_login_email("a@x.example") == a.client_id
