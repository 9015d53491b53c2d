"""Login emails: which email addresses may sign in to which client's dashboard.

A client's contact email always may; admins link more with ``LinkLoginEmail``.
Links live in the event log only (``client.login_email_linked``); logins are
rare, so reading them back from the log costs nothing that matters.
"""

from __future__ import annotations

from coordinator.accounts.commands import LinkLoginEmail
from coordinator.accounts.model import ClientStatus, InvalidCommand, valid_email
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.accounts.views import load_live_client
from eventlog.events import ClientLoginEmailLinked

LINKED = ClientLoginEmailLinked.event_type
PAGE = 1000


def normalised(email: str) -> str:
    return email.strip().lower()


def _links(tx: AccountsTransaction) -> list[tuple[str, str]]:
    """(normalised email, client id) of every link, oldest first."""
    out: list[tuple[str, str]] = []
    after = 0
    while True:
        page = tx.events.read(after, PAGE, None, LINKED)
        out += [(normalised(str(e.data["email"])), str(e.client_id)) for e in page]
        if len(page) < PAGE:
            return out
        after = page[-1].seq


def _client_for(tx: AccountsTransaction, email: str) -> str | None:
    wanted = normalised(email)
    live = [c for c in tx.list_clients() if c.status is not ClientStatus.DELETED]
    for client in live:
        if normalised(client.email) == wanted:
            return client.client_id
    alive = {c.client_id for c in live}
    for linked, client_id in _links(tx):
        if linked == wanted and client_id in alive:
            return client_id
    return None


async def client_for_login_email(uow: AccountsUnitOfWork, email: str) -> str | None:
    """The live client this email signs in to: contact emails first (oldest client), then links."""
    return await uow.read(lambda tx: _client_for(tx, email))


async def login_emails(uow: AccountsUnitOfWork, client_id: str) -> list[str]:
    """The emails linked to a live client (its contact email not included)."""

    def body(tx: AccountsTransaction) -> list[str]:
        load_live_client(tx, client_id)
        return sorted({e for e, cid in _links(tx) if cid == client_id})

    return await uow.read(body)


async def link_login_email(cmd: LinkLoginEmail, uow: AccountsUnitOfWork) -> str:
    """Record ClientLoginEmailLinked; an email already signing in elsewhere is refused."""
    email = normalised(valid_email(cmd.email))

    def body(tx: AccountsTransaction) -> str:
        client = load_live_client(tx, cmd.client_id)
        current = _client_for(tx, email)
        if current == client.client_id:
            return email  # already signs in here: nothing to record
        if current is not None:
            raise InvalidCommand("that email already signs in to another client")
        tx.append([ClientLoginEmailLinked(client_id=client.client_id, email=email)], cmd.actor)
        return email

    return await uow.write(body)
