"""Data keys: wrapped under the master key, created once, rotated in two commits, shredded."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install_error_handlers
from api.middleware import RequestContext
from api.routes import admin_encryption
from api.services import Services, ServicesApp
from coordinator.accounts import Accounts, CreateClient, DeleteClient, PauseClient
from coordinator.accounts.model import ClientNotFound
from coordinator.data_keys import DataKeys
from coordinator.key_wrapping import KeyUnavailable, LocalKeyWrapper
from workers.sealed import Keyring

PEPPER = b"p" * 32


def _master() -> str:
    return secrets.token_urlsafe(32)


def _setup() -> tuple[Accounts, DataKeys, str]:
    accounts = Accounts.in_memory(PEPPER)
    keys = DataKeys(accounts.uow, LocalKeyWrapper([_master()]))
    view = asyncio.run(accounts.handle(CreateClient(name="Acme", email="o@acme.io")))
    return accounts, keys, view.client_id


class Fleet:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def reseal_tenant(self, tenant: str) -> list[str]:
        self.calls.append(("reseal", tenant))
        return []

    async def release_tenant(self, tenant: str) -> None:
        self.calls.append(("release", tenant))


def test_wrapper_round_trip_and_refusals() -> None:
    current, old = _master(), _master()
    wrapper = LocalKeyWrapper([current, old])
    retired = LocalKeyWrapper([old])
    key = secrets.token_bytes(32)
    wrapped = retired.wrap(key)
    assert key not in wrapped
    assert wrapper.unwrap(wrapped, retired.key_id) == key  # the old master key still opens it
    with pytest.raises(KeyUnavailable):
        LocalKeyWrapper([current]).unwrap(wrapped, retired.key_id)
    with pytest.raises(KeyUnavailable):
        wrapper.unwrap(wrapped, wrapper.key_id)  # wrong master key: AES-KW integrity check
    assert current not in repr(wrapper)
    with pytest.raises(ValueError):
        LocalKeyWrapper(["short"])


def test_one_key_per_client_sent_to_workers_and_never_in_events() -> None:
    accounts, keys, cid = _setup()
    first = asyncio.run(keys.keyring_for(cid))
    assert first is not None and first["current"] == 1
    assert asyncio.run(keys.keyring_for(cid)) == first  # created once
    ring = Keyring.from_wire(first)
    assert len(ring.keys[1]) == 32
    assert asyncio.run(keys.keyring_for("not_a_client")) is None
    for event in asyncio.run(accounts.list_events()):
        assert ring.keys[1].hex() not in str(event.data)


def test_rotation_keeps_both_keys_until_resealed_then_retires_the_old_one() -> None:
    accounts, keys, cid = _setup()
    asyncio.run(keys.ensure(cid))
    version, started = asyncio.run(keys.begin_rotation(cid))
    assert (version, started) == (2, True)
    assert asyncio.run(keys.begin_rotation(cid)) == (2, False)  # the same rotation
    both = asyncio.run(keys.keyring_for(cid))
    assert both is not None and sorted(both["keys"]) == ["1", "2"] and both["current"] == 2
    assert asyncio.run(keys.pending_rotations()) == [(cid, 2)]
    fleet = Fleet()
    asyncio.run(keys.rotate(cid, 2, fleet, "admin", "yearly"))
    assert fleet.calls == [("reseal", cid), ("release", cid)]
    after = asyncio.run(keys.keyring_for(cid))
    assert after == both  # the retired key is kept (wrapped) for older backups
    states = asyncio.run(accounts.uow.read(lambda tx: tx.data_keys.of_client(cid)))
    assert [(r.key_version, r.state) for r in states] == [(1, "retired"), (2, "active")]
    assert asyncio.run(keys.pending_rotations()) == []
    assert asyncio.run(keys.begin_rotation(cid)) == (3, True)  # the next one
    rotated = asyncio.run(accounts.list_events(type="client.data_key_rotated"))
    assert len(rotated) == 1 and rotated[0].data["key_version"] == 2
    assert rotated[0].data["reason"] == "yearly"
    # Finishing again is a no-op: no second event.
    assert asyncio.run(keys.finish_rotation(cid, 2, "admin", None)) is False


def test_delete_destroys_the_keys_in_the_same_commit_as_the_event() -> None:
    accounts, keys, cid = _setup()
    asyncio.run(keys.ensure(cid))
    asyncio.run(keys.rotate(cid, asyncio.run(keys.begin_rotation(cid))[0], Fleet(), "a", None))
    rows = asyncio.run(accounts.uow.read(lambda tx: tx.data_keys.of_client(cid)))
    assert len(rows) == 2  # active and retired: both go
    files = (("hot/x/c/seg-1/vectors.npy", "ab" * 32),)
    asyncio.run(accounts.handle(DeleteClient(client_id=cid, reason="gone", files=files)))
    assert asyncio.run(keys.keyring_for(cid)) is None
    assert asyncio.run(accounts.uow.read(lambda tx: tx.data_keys.of_client(cid))) == []
    (event,) = asyncio.run(accounts.list_events(type="client.deleted"))
    receipt = event.data["receipt"]
    assert receipt["data_key_ids"] == [r.key_id for r in rows]
    assert receipt["files"] == [{"path": files[0][0], "sha256": files[0][1]}]
    assert receipt["chain_head_seq"] == event.seq - 1
    # No key comes back for a deleted client, and no rotation starts.
    assert asyncio.run(keys.ensure(cid)) == []
    with pytest.raises(ClientNotFound):
        asyncio.run(keys.begin_rotation(cid))


TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _app(accounts: Accounts, keys: DataKeys | None, fleet: Fleet) -> FastAPI:
    services = Services(
        accounts=accounts,
        dataplane=fleet,
        hub=None,
        history=None,
        metrics=None,
        admin_token=TOKEN.encode(),
        data_keys=keys,
    )
    app = ServicesApp(services)
    install_error_handlers(app)
    app.include_router(admin_encryption.router)
    app.add_middleware(RequestContext, max_body_bytes=1 << 20)
    return app


def test_rotate_key_route_answers_202_then_rotates_in_the_background() -> None:
    accounts, keys, cid = _setup()
    fleet = Fleet()
    with TestClient(_app(accounts, keys, fleet)) as http:
        r = http.post(
            f"/admin/v1/clients/{cid}/rotate-key", json={"reason": "policy"}, headers=AUTH
        )
        assert r.status_code == 202, r.text
        assert r.json() == {"key_version": 2, "status": "rotating"}
        for _ in range(200):
            if asyncio.run(accounts.list_events(type="client.data_key_rotated")):
                break
            time.sleep(0.01)
        (event,) = asyncio.run(accounts.list_events(type="client.data_key_rotated"))
        assert event.data["reason"] == "policy" and event.actor == "admin"
        assert fleet.calls == [("reseal", cid), ("release", cid)]
        assert http.post("/admin/v1/clients/cnope/rotate-key", headers=AUTH).status_code == 404
        bad = http.post(f"/admin/v1/clients/{cid}/rotate-key", json={"x": 1}, headers=AUTH)
        assert bad.status_code == 422
        asyncio.run(accounts.handle(PauseClient(client_id=cid, reason="cold")))
        paused = http.post(f"/admin/v1/clients/{cid}/rotate-key", headers=AUTH)
        assert paused.status_code == 409 and "resume" in paused.json()["error"]["message"]
    with TestClient(_app(accounts, None, fleet)) as http:
        off = http.post(f"/admin/v1/clients/{cid}/rotate-key", headers=AUTH)
        assert off.status_code == 503
