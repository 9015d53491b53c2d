"""Accounts: clients and API keys, event-sourced, behind one facade for the API.

Build it in the composition root with ``Accounts(settings.control_db, pepper,
settings.key_cache_size)``; nothing here connects at import time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, overload

from coordinator.accounts import handlers, login_emails, operators, views
from coordinator.accounts.commands import (
    ChangeTier,
    Command,
    CreateClient,
    DeleteClient,
    FlagBillingAnomaly,
    IssueApiKey,
    IssueOperator,
    LinkLoginEmail,
    PauseClient,
    RecordBackupActivity,
    RecordBilling,
    RecordCensus,
    RecordCollectionCreated,
    RecordCollectionDeleted,
    RecordStorageLow,
    RecordUsage,
    ResumeClient,
    RevokeApiKey,
    RevokeOperator,
)
from coordinator.accounts.key_cache import KeyCache
from coordinator.accounts.key_usage import KeyUseRecorder
from coordinator.accounts.memory_uow import InMemoryUnitOfWork
from coordinator.accounts.model import (
    ApiKeyNotFound,
    ClientNotFound,
    InvalidCommand,
    Principal,
    StoreUnavailable,
)
from coordinator.accounts.operators import (
    IssuedOperator,
    OperatorNameTaken,
    OperatorNotFound,
    OperatorView,
)
from coordinator.accounts.uow import AccountsUnitOfWork, SqliteUnitOfWork
from coordinator.accounts.views import ApiKeyView, ClientView, IssuedApiKey
from eventlog.hashchain import ChainReport
from eventlog.records import StoredEvent
from eventlog.sqlite import open_engine

MIN_PEPPER_BYTES = 16

__all__ = [
    "Accounts",
    "ApiKeyNotFound",
    "ApiKeyView",
    "ChangeTier",
    "ClientNotFound",
    "ClientView",
    "CreateClient",
    "DeleteClient",
    "FlagBillingAnomaly",
    "InvalidCommand",
    "IssueApiKey",
    "IssueOperator",
    "IssuedApiKey",
    "IssuedOperator",
    "LinkLoginEmail",
    "OperatorNameTaken",
    "OperatorNotFound",
    "OperatorView",
    "PauseClient",
    "Principal",
    "RecordBackupActivity",
    "RecordBilling",
    "RecordCensus",
    "RecordCollectionCreated",
    "RecordCollectionDeleted",
    "RecordStorageLow",
    "RecordUsage",
    "ResumeClient",
    "RevokeApiKey",
    "RevokeOperator",
    "StoreUnavailable",
]


def _check_pepper(pepper: bytes) -> None:
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ValueError(f"the key pepper must be at least {MIN_PEPPER_BYTES} bytes")


class Accounts:
    """Commands, reads and key checks over one unit of work and one key cache."""

    uow: AccountsUnitOfWork
    key_cache: KeyCache
    key_uses: KeyUseRecorder

    def __init__(self, db_path: Path, pepper: bytes, cache_size: int = 100_000) -> None:
        """Open (creating if needed) the control database at ``db_path``."""
        _check_pepper(pepper)
        self._setup(SqliteUnitOfWork(open_engine(db_path)), pepper, cache_size)

    @classmethod
    def with_unit_of_work(
        cls, uow: AccountsUnitOfWork, pepper: bytes, cache_size: int = 1000
    ) -> Accounts:
        """Accounts over any unit of work (the in-memory one in tests)."""
        _check_pepper(pepper)
        accounts = cls.__new__(cls)
        accounts._setup(uow, pepper, cache_size)
        return accounts

    @classmethod
    def in_memory(cls, pepper: bytes, cache_size: int = 1000) -> Accounts:
        """Accounts held in memory, for tests."""
        return cls.with_unit_of_work(InMemoryUnitOfWork(), pepper, cache_size)

    def _setup(self, uow: AccountsUnitOfWork, pepper: bytes, cache_size: int) -> None:
        self.uow = uow
        self._pepper = pepper
        self.key_cache = KeyCache(uow, pepper, cache_size)
        self.key_uses = KeyUseRecorder(uow, max_keys=max(cache_size, 1000))
        # In-process eviction happens before a command returns, so a revoked key fails at once.
        uow.subscribe(self.key_cache.apply)

    @overload
    async def handle(self, cmd: CreateClient) -> ClientView: ...
    @overload
    async def handle(self, cmd: IssueApiKey) -> IssuedApiKey: ...
    @overload
    async def handle(self, cmd: RevokeApiKey) -> None: ...
    @overload
    async def handle(self, cmd: LinkLoginEmail) -> str: ...
    @overload
    async def handle(self, cmd: ChangeTier) -> ClientView: ...
    @overload
    async def handle(self, cmd: RecordBilling) -> StoredEvent: ...
    @overload
    async def handle(self, cmd: DeleteClient) -> bool: ...
    @overload
    async def handle(self, cmd: RecordCollectionCreated | RecordCollectionDeleted) -> None: ...
    @overload
    async def handle(self, cmd: PauseClient | ResumeClient) -> ClientView: ...
    @overload
    async def handle(
        self,
        cmd: RecordUsage
        | RecordCensus
        | FlagBillingAnomaly
        | RecordStorageLow
        | RecordBackupActivity,
    ) -> StoredEvent: ...
    @overload
    async def handle(self, cmd: IssueOperator) -> IssuedOperator: ...
    @overload
    async def handle(self, cmd: RevokeOperator) -> OperatorView: ...
    async def handle(self, cmd: Command) -> Any:
        """Run a command; raises ClientNotFound, ApiKeyNotFound or InvalidCommand."""
        return await handlers.dispatch(cmd, self.uow, self._pepper)

    async def get_client(self, client_id: str) -> ClientView:
        return await views.get_client(self.uow, client_id)

    async def list_clients(self) -> list[ClientView]:
        return await views.list_clients(self.uow)

    async def client_for_login_email(self, email: str) -> str | None:
        """The live client a dashboard login with this (verified) email belongs to, if any."""
        return await login_emails.client_for_login_email(self.uow, email)

    async def login_emails(self, client_id: str) -> list[str]:
        """Emails linked to the client for dashboard login, besides its contact email."""
        return await login_emails.login_emails(self.uow, client_id)

    async def list_api_keys(self, client_id: str) -> list[ApiKeyView]:
        return await views.list_api_keys(self.uow, client_id)

    async def list_events(
        self,
        after_seq: int = 0,
        limit: int = 100,
        client_id: str | None = None,
        type: str | None = None,
    ) -> list[StoredEvent]:
        return await views.list_events(self.uow, after_seq, limit, client_id, type)

    async def verify_chain(self) -> ChainReport:
        return await views.verify_chain(self.uow)

    async def list_operators(self) -> list[OperatorView]:
        return await operators.list_operators(self.uow)

    async def operator_actor(self, presented: str) -> str | None:
        """The actor (``operator:<name>``) of a valid operator token, or None."""
        return await operators.authenticate(self.uow, self._pepper, presented)

    async def authenticate(self, presented: str) -> Principal | None:
        """The principal of a valid API key, or None (malformed, unknown, revoked, expired,
        deleted). A success is noted for the key's ``last_used_at`` (written later)."""
        principal = await self.key_cache.authenticate(presented)
        if principal is not None:
            self.key_uses.note(principal.key_id)
        return principal

    async def writable(self) -> bool:
        """Whether the control database can take a write right now (readiness)."""
        return await self.uow.writable()

    async def close(self) -> None:
        """Release the database (in a thread: closing checkpoints the WAL)."""
        await asyncio.to_thread(self.uow.close)
