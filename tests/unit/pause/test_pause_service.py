"""Pause/resume orchestration: status first on pause, files first on resume, retried moves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coordinator.accounts import Accounts, CreateClient, RecordUsage
from coordinator.errors import TenantUnavailable
from coordinator.pause import PauseService
from coordinator.usage import UsageMeter


class FlakyFiles:
    def __init__(self) -> None:
        self.where: dict[str, str] = {}
        self.fail = 0
        self.calls: list[tuple[str, str]] = []

    async def release(self, tenant: str) -> None:
        self.calls.append(("release", tenant))

    async def move(self, tenant: str, to: str) -> dict[str, Any]:
        if self.fail:
            self.fail -= 1
            raise TenantUnavailable("no worker")
        self.where[tenant] = to
        self.calls.append(("move", to))
        return {"location": to}

    async def describe(self, tenant: str) -> dict[str, Any]:
        return {"location": self.where.get(tenant, "hot")}

    async def delete_cold(self, tenant: str) -> None:
        raise AssertionError("not in these tests")


def test_pause_resume_and_retry_after_a_failed_move() -> None:
    async def go() -> None:
        accounts = Accounts.in_memory(b"p" * 32)
        files = FlakyFiles()
        service = PauseService(accounts, files)
        cid = (await accounts.handle(CreateClient("A", "a@x.test"))).client_id
        files.fail = 1
        view = await service.pause(cid, "because", "admin")
        assert view.status == "paused" and cid in service.pending
        assert files.where.get(cid) is None  # the move failed: data still hot, requests 423
        assert await service.reconcile(only_pending=True) == 1
        assert files.where[cid] == "cold" and not service.pending
        files.fail = 1
        with pytest.raises(TenantUnavailable):
            await service.resume(cid, "admin")
        assert (await accounts.get_client(cid)).status == "paused", "not resumed while cold"
        assert (await service.resume(cid, "admin")).status == "active"
        assert files.where[cid] == "hot"
        types = [e.type for e in await accounts.list_events()]
        assert types.count("client.paused") == 1 and types.count("client.resumed") == 1

    asyncio.run(go())


def test_usage_meter_keeps_counts_when_recording_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        accounts = Accounts.in_memory(b"p" * 32)
        meter = UsageMeter(accounts)
        cid = (await accounts.handle(CreateClient("A", "a@x.test"))).client_id
        scope = {"path": "/v1/collections", "state": {"client_id": cid}}
        meter.observe_request(scope, 200, 0.01)
        meter.observe_request(scope, 423, 0.01)
        meter.observe_request({"path": "/admin/v1/clients", "state": {}}, 200, 0.01)
        meter.record_queries(cid, 3)
        original = accounts.handle

        async def broken(cmd: Any) -> Any:
            if isinstance(cmd, RecordUsage):
                raise RuntimeError("database busy")
            return await original(cmd)

        monkeypatch.setattr(accounts, "handle", broken)
        assert await meter.flush() == 0
        monkeypatch.setattr(accounts, "handle", original)
        meter.record_queries(cid, 1)
        assert await meter.flush() == 1
        (event,) = await accounts.list_events(type="usage.recorded")
        assert (event.data["requests"], event.data["rejected"], event.data["queries"]) == (2, 1, 4)

    asyncio.run(go())
