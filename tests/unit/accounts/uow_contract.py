"""One contract for every accounts unit of work, driven through the real handlers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from coordinator.accounts.commands import CreateClient, IssueApiKey, RevokeApiKey
from coordinator.accounts.handlers import handle
from coordinator.accounts.model import (
    ApiKeyNotFound,
    ClientNotFound,
    ClientRecord,
    ClientStatus,
    InvalidCommand,
    Tier,
    key_digest,
)
from coordinator.accounts.uow import AccountsTransaction, AccountsUnitOfWork
from coordinator.accounts.views import get_client, list_api_keys, list_clients, verify_chain
from eventlog.events import ClientCreated
from eventlog.records import StoredEvent

PEPPER = b"contract-pepper-0123456789abcdef"
MakeUow = Callable[[], AccountsUnitOfWork]


async def all_events(uow: AccountsUnitOfWork) -> list[StoredEvent]:
    return await uow.read(lambda tx: tx.events.read(limit=1000))


class Boom(RuntimeError):
    pass


class UnitOfWorkContract:
    """Behaviour every unit of work must show; backends differ only in make_uow."""

    @pytest.fixture
    def uow(self, make_uow: MakeUow) -> AccountsUnitOfWork:
        return make_uow()

    async def test_created_client_is_visible_with_its_event(self, uow: AccountsUnitOfWork) -> None:
        view = await handle(CreateClient("Acme", "ops@acme.io", "standard", "admin"), uow, PEPPER)
        assert view.status == "active" and view.tier == "standard"
        assert await get_client(uow, view.client_id) == view
        assert await list_clients(uow) == [view]
        (event,) = await all_events(uow)
        assert event.type == "client.created" and event.client_id == view.client_id
        assert event.actor == "admin" and event.occurred_at == view.created_at
        assert event.to_event() == ClientCreated(
            client_id=view.client_id, name="Acme", email="ops@acme.io", tier="standard"
        )

    async def test_issue_stores_only_the_digest(self, uow: AccountsUnitOfWork) -> None:
        client = await handle(CreateClient("Acme", "ops@acme.io"), uow, PEPPER)
        issued = await handle(IssueApiKey(client.client_id, ("write", "read"), "ci"), uow, PEPPER)
        assert issued.api_key.startswith(f"vp_{issued.key_id}_")
        assert issued.api_key not in repr(issued)
        record = await uow.read(lambda tx: tx.get_api_key(issued.key_id))
        assert record is not None and record.digest == key_digest(PEPPER, issued.api_key)
        (view,) = await list_api_keys(uow, client.client_id)
        assert (view.key_id, view.label, view.scopes) == (issued.key_id, "ci", ("read", "write"))
        assert view.revoked_at is None and not hasattr(view, "digest")
        events = await all_events(uow)
        assert events[-1].type == "api_key.issued"
        # A free-tier key issued without expires_at gets the tier's maximum lifetime.
        assert issued.expires_at is not None and view.expires_at == issued.expires_at
        assert events[-1].data == {
            "key_id": issued.key_id,
            "scopes": ["read", "write"],
            "label": "ci",
            "expires_at": issued.expires_at,
            "allowed_cidrs": [],
        }
        secret = issued.api_key.split("_", 2)[2]
        assert all(secret not in repr(e) and record.digest not in repr(e) for e in events)

    async def test_revoke_once_then_idempotent(self, uow: AccountsUnitOfWork) -> None:
        client = await handle(CreateClient("Acme", "ops@acme.io"), uow, PEPPER)
        issued = await handle(IssueApiKey(client.client_id, ("read",)), uow, PEPPER)
        await handle(RevokeApiKey(client.client_id, issued.key_id, "scheduler"), uow, PEPPER)
        await handle(RevokeApiKey(client.client_id, issued.key_id), uow, PEPPER)
        (view,) = await list_api_keys(uow, client.client_id)
        assert view.revoked_at is not None
        events = await all_events(uow)
        assert [e.type for e in events] == ["client.created", "api_key.issued", "api_key.revoked"]
        assert events[-1].actor == "scheduler"
        assert await uow.read(lambda tx: tx.find_principal(issued.key_id)) is None

    async def test_keys_of_other_clients_and_unknown_ids_are_not_found(
        self, uow: AccountsUnitOfWork
    ) -> None:
        a = await handle(CreateClient("A", "a@a.io"), uow, PEPPER)
        b = await handle(CreateClient("B", "b@b.io"), uow, PEPPER)
        key_a = await handle(IssueApiKey(a.client_id, ("read",)), uow, PEPPER)
        with pytest.raises(ApiKeyNotFound):
            await handle(RevokeApiKey(b.client_id, key_a.key_id), uow, PEPPER)
        with pytest.raises(ApiKeyNotFound):
            await handle(RevokeApiKey(a.client_id, "0" * 16), uow, PEPPER)
        for bad in ("c0000000000000000", "../etc", "C1"):
            with pytest.raises(ClientNotFound):
                await handle(IssueApiKey(bad, ("read",)), uow, PEPPER)
            with pytest.raises(ClientNotFound):
                await get_client(uow, bad)
        assert await list_api_keys(uow, b.client_id) == []
        assert len(await all_events(uow)) == 3

    async def test_invalid_commands_change_nothing(self, uow: AccountsUnitOfWork) -> None:
        client = await handle(CreateClient("Acme", "ops@acme.io"), uow, PEPPER)
        bad_commands = [
            CreateClient("Acme", "not-an-email"),
            CreateClient("   ", "ops@acme.io"),
            CreateClient("Acme", "ops@acme.io", "platinum"),
            IssueApiKey(client.client_id, ()),
            IssueApiKey(client.client_id, ("read", "sudo")),
            IssueApiKey(client.client_id, ("read",), "x" * 101),
        ]
        for cmd in bad_commands:
            with pytest.raises(InvalidCommand):
                await handle(cmd, uow, PEPPER)
        assert len(await all_events(uow)) == 1
        assert len(await list_clients(uow)) == 1

    async def test_failure_after_append_rolls_back_row_and_event(
        self, uow: AccountsUnitOfWork
    ) -> None:
        await handle(CreateClient("Kept", "kept@acme.io"), uow, PEPPER)
        before = await all_events(uow)

        def body(tx: AccountsTransaction) -> None:
            client = ClientRecord(
                "cdeadbeef00000000", "Gone", "g@x.io", Tier.FREE, ClientStatus.ACTIVE, tx.now
            )
            tx.add_client(client)
            tx.append(
                [
                    ClientCreated(
                        client_id=client.client_id, name="Gone", email="g@x.io", tier="free"
                    )
                ],
                "admin",
            )
            assert tx.get_client(client.client_id) is not None  # visible inside the transaction
            raise Boom("after the append")

        with pytest.raises(Boom):
            await uow.write(body)
        assert await all_events(uow) == before
        with pytest.raises(ClientNotFound):
            await get_client(uow, "cdeadbeef00000000")
        assert [e.seq for e in await uow.read(lambda tx: tx.events.pending_outbox())] == [1]
        # The chain continues from the last committed event, not from the rolled-back one.
        view = await handle(CreateClient("Next", "next@acme.io"), uow, PEPPER)
        events = await all_events(uow)
        assert events[-1].seq == 2 and events[-1].client_id == view.client_id
        assert (await verify_chain(uow)).ok

    async def test_listeners_see_committed_events_only(self, uow: AccountsUnitOfWork) -> None:
        seen: list[Sequence[StoredEvent]] = []
        uow.subscribe(seen.append)
        view = await handle(CreateClient("Acme", "ops@acme.io"), uow, PEPPER)
        with pytest.raises(InvalidCommand):
            await handle(IssueApiKey(view.client_id, ()), uow, PEPPER)

        def failing(tx: AccountsTransaction) -> None:
            tx.append(
                [ClientCreated(client_id="cx", name="X", email="x@x.io", tier="free")], "admin"
            )
            raise Boom

        with pytest.raises(Boom):
            await uow.write(failing)
        assert [[e.type for e in batch] for batch in seen] == [["client.created"]]

    async def test_chain_verifies_after_many_commands(self, uow: AccountsUnitOfWork) -> None:
        for n in range(15):
            client = await handle(CreateClient(f"C{n}", f"c{n}@x.io"), uow, PEPPER)
            key = await handle(IssueApiKey(client.client_id, ("read",)), uow, PEPPER)
            await handle(RevokeApiKey(client.client_id, key.key_id), uow, PEPPER)
        report = await verify_chain(uow)
        assert report.ok and report.events == 45

    async def test_tier_change_and_delete_update_the_write_model_with_events(
        self, uow: AccountsUnitOfWork
    ) -> None:
        from coordinator.accounts.commands import ChangeTier, DeleteClient, RecordBilling

        view = await handle(CreateClient("Acme", "ops@acme.io", "free", "admin"), uow, PEPPER)
        changed = await handle(ChangeTier(view.client_id, "premium", "admin"), uow, PEPPER)
        assert (
            changed.tier == "premium" and (await get_client(uow, view.client_id)).tier == "premium"
        )
        billed = await handle(
            RecordBilling(view.client_id, "payment_received", 100, "EUR", "P-1", "robot"),
            uow,
            PEPPER,
        )
        assert billed.type == "billing.payment_received" and billed.actor == "robot"
        with pytest.raises(InvalidCommand):
            await handle(RecordBilling(view.client_id, "refund", 1, "EUR", "x"), uow, PEPPER)
        assert await handle(DeleteClient(view.client_id), uow, PEPPER) is True
        assert await handle(DeleteClient(view.client_id), uow, PEPPER) is False
        with pytest.raises(ClientNotFound):
            await get_client(uow, view.client_id)
        with pytest.raises(ClientNotFound):
            await handle(ChangeTier(view.client_id, "free"), uow, PEPPER)
        types = [e.type for e in await all_events(uow)]
        assert types == [
            "client.created",
            "client.tier_changed",
            "billing.payment_received",
            "client.deleted",
        ]
