"""The history read service: one client's events, streamed from the log and folded.

The admin API and the dashboard reach it through ``ClientHistory`` (a read
transaction of the accounts unit of work); the CLI calls ``state_as_of`` and
``changes_between`` on the event store directly, so it works with the
coordinator down.
"""

from __future__ import annotations

from datetime import datetime

from coordinator.accounts.model import ClientNotFound, valid_client_id
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.history.model import (
    FIELDS,
    STATE_EVENT_TYPES,
    Change,
    ClientAsOf,
    client_as_of,
    client_changes,
)
from coordinator.history.moments import END_OF_TIME, read_bound
from eventlog.records import EventStore

__all__ = ["FIELDS", "Change", "ClientAsOf", "ClientHistory", "changes_between", "state_as_of"]


def _known(client_id: str) -> None:
    # An id that cannot exist is answered like one that never did.
    if not valid_client_id(client_id):
        raise ClientNotFound("no such client")


def state_as_of(events: EventStore, client_id: str, at: datetime) -> ClientAsOf:
    """The client as of ``at``; ClientNotFound if it did not exist by then (or ever)."""
    _known(client_id)
    stream = events.client_events(client_id, read_bound(at), STATE_EVENT_TYPES)
    state = client_as_of(client_id, stream, at)
    if state is None:
        raise ClientNotFound("no such client at that time")
    return state


def changes_between(
    events: EventStore,
    client_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    field: str | None = None,
) -> list[Change]:
    """Who changed which field of the client, when and why, in ``[since, until]``.

    No ``until`` means to the end of the log. ValueError for an unknown ``field``;
    ClientNotFound if the client did not exist by ``until``.
    """
    if field is not None and field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; fields: {', '.join(FIELDS)}")
    _known(client_id)
    bound = read_bound(until) if until is not None else END_OF_TIME
    stream = events.client_events(client_id, bound, STATE_EVENT_TYPES)
    existed, found = client_changes(client_id, stream, since, until, field)
    if not existed:
        raise ClientNotFound("no such client")
    return found


class ClientHistory:
    """History reads in a read transaction of the control database (never the write lock)."""

    def __init__(self, uow: AccountsUnitOfWork) -> None:
        self._uow = uow

    async def as_of(self, client_id: str, at: datetime) -> ClientAsOf:
        def body(tx: AccountsTransaction) -> ClientAsOf:
            return state_as_of(tx.events, client_id, at)

        return await self._uow.read(body)

    async def changes(
        self,
        client_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        field: str | None = None,
    ) -> list[Change]:
        def body(tx: AccountsTransaction) -> list[Change]:
            return changes_between(tx.events, client_id, since, until, field)

        return await self._uow.read(body)
