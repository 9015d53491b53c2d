"""Routing in a follower coordinator process: serve from what workers hold, ask the leader.

With several coordinator processes (VP_COORDINATOR_PROCESSES, docs/process-model.md)
one of them leads placement (coordinator/leader.py): it alone sends ASSIGN, RELEASE
and moves, so epochs come from one place and a tenant is never given to two workers.
Every worker dials into every coordinator process and reports in each heartbeat what
it holds (tenant -> epoch). A follower routes a data frame to the live worker that
holds the tenant at the highest epoch; for a tenant nobody holds it asks the leader to
place it (an internal call over loopback, authenticated with the worker secret) and
routes to the answer. A stale guess costs one NOT_OWNER refusal (the worker checks the
epoch of every frame; nothing is applied) and the follower asks again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.errors import TenantUnavailable
from coordinator.hub import WorkerHub, WorkerLink

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("vectorpanda.follower")

# How long a follower waits for the worker the leader named to be connected here too.
LINK_WAIT_S = 2.0


def held_owner(hub: WorkerHub, tenant: str) -> tuple[WorkerLink, int] | None:
    """The live worker that reports holding ``tenant`` at the highest epoch, if any."""
    best: tuple[WorkerLink, int] | None = None
    for link in hub.live():
        epoch = (link.held or {}).get(tenant)
        if epoch is not None and (best is None or epoch > best[1]):
            best = (link, epoch)
    return best


class LeaderClient:
    """A follower's calls to the leader's internal placement API.

    ``where``: the leader's address file (one host's group), or a function that returns
    its address (the group's membership table in PostgreSQL, coordinator/membership.py).
    """

    def __init__(self, where: Path | Callable[[], str | None], worker_secret: str) -> None:
        self._where = where
        self._secret = worker_secret
        self._client: httpx.AsyncClient | None = None

    def leader_url(self) -> str | None:
        if not isinstance(self._where, Path):
            return self._where()
        try:
            data = json.loads(self._where.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        url = data.get("url") if isinstance(data, dict) else None
        return url if isinstance(url, str) else None

    async def call(self, action: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """POST to the leader's ``/internal/v1/<action>``; TenantUnavailable if that fails."""
        remaining = deadline - time.monotonic()
        url = self.leader_url()
        if url is None or remaining <= 0:
            raise TenantUnavailable("Placement is changing hands; retry shortly.", retry_after=1)
        # httpx on first use: with click installed it loads rich and pygments (~5 MiB),
        # which a coordinator that is not a follower has no use for.
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={"Authorization": f"Bearer {self._secret}"}, trust_env=False
            )
        try:
            reply = await self._client.post(
                f"{url}/internal/v1/{action}", json=body, timeout=remaining
            )
        except httpx.HTTPError as exc:
            log.warning("the placement leader did not answer %s: %s", action, exc)
            raise TenantUnavailable(
                "Placement is changing hands; retry shortly.", retry_after=1
            ) from None
        if reply.status_code != 200:
            detail = reply.text[:200]
            log.warning("the placement leader refused %s: %s %s", action, reply.status_code, detail)
            raise TenantUnavailable("The tenant cannot be placed right now; retry shortly.")
        data = reply.json()
        return data if isinstance(data, dict) else {}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class FollowerPlacement:
    """What a follower does instead of placing: find the holder, or ask the leader."""

    def __init__(self, hub: WorkerHub, leader: LeaderClient) -> None:
        self._hub = hub
        self.leader = leader
        self.asked = 0  # placements asked of the leader (metrics, tests)
        # tenant -> (worker, epoch) that refused it (NOT_OWNER): told to the leader, whose
        # own assignment may be that stale one (the worker let go when its lease lapsed)
        self._refused: dict[str, tuple[str, int]] = {}

    async def owner(self, tenant: str, deadline: float) -> tuple[WorkerLink, int]:
        found = held_owner(self._hub, tenant)
        if found is not None:
            return found
        self.asked += 1
        body: dict[str, Any] = {"tenant": tenant}
        refused = self._refused.pop(tenant, None)
        if refused is not None:
            body["refused_by"], body["refused_epoch"] = refused
        answer = await self.leader.call("place", body, deadline)
        worker_id, epoch = answer.get("worker_id"), answer.get("epoch")
        if not isinstance(worker_id, str) or not isinstance(epoch, int):
            raise TenantUnavailable("The tenant cannot be placed right now; retry shortly.")
        wait_until = min(deadline, time.monotonic() + LINK_WAIT_S)
        while True:
            link = self._hub.links.get(worker_id)
            if link is not None and link.alive:
                if link.held is not None:  # until its next heartbeat says so itself
                    link.held[tenant] = max(epoch, link.held.get(tenant, 0))
                return link, epoch
            if time.monotonic() >= wait_until:
                raise TenantUnavailable(
                    "The worker serving this tenant is not connected here yet; retry shortly."
                )
            await asyncio.sleep(0.02)

    def forget(self, link: WorkerLink, tenant: str, epoch: int) -> None:
        """``link`` refused ``tenant`` at ``epoch`` (NOT_OWNER): stop guessing it holds it."""
        if link.held is not None and link.held.get(tenant) == epoch:
            del link.held[tenant]
        if len(self._refused) < 10_000:
            self._refused[tenant] = (link.worker_id, epoch)
