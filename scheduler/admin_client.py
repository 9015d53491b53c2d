"""The scheduler's only way to act: the admin API, with its own token (actor ``scheduler``).

``VP_ADMIN_URL`` may name several coordinators, comma-separated: a call that cannot
connect to one (refused, unreachable: nothing was sent) goes to the next, and the
one that answered is tried first from then on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

PAGE = 1000


class AdminClient:
    """Typed calls on ``/admin/v1``; ``transport`` lets tests talk to an in-process app."""

    def __init__(
        self, base_url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._bases = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
        if not self._bases:
            raise ValueError("the admin API URL is empty")
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, read=900.0),  # a pause waits for the move to cold
            transport=transport,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(len(self._bases)):
            try:
                return await self._http.request(method, self._bases[0] + path, **kwargs)
            except httpx.ConnectError:
                if attempt == len(self._bases) - 1:
                    raise
                self._bases.append(self._bases.pop(0))  # never sent: the next one may
        raise AssertionError("unreachable")

    async def _get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        r = await self._request("GET", path, params=query)
        r.raise_for_status()
        return r.json()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await self._request("POST", path, json=body)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    async def clients(self) -> list[dict[str, Any]]:
        body = await self._get("/admin/v1/clients")
        return list(body["clients"])

    async def events(self, type: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """Every event of one type after ``after_seq``."""
        out: list[dict[str, Any]] = []
        while True:
            body = await self._get("/admin/v1/events", type=type, after_seq=after_seq, limit=PAGE)
            out.extend(body["events"])
            if len(body["events"]) < PAGE:
                return out
            after_seq = body["next_after_seq"]

    async def usage(self, since: datetime) -> dict[str, dict[str, Any]]:
        body = await self._get("/admin/v1/usage", since=since.isoformat())
        return {row["client_id"]: row for row in body["clients"]}

    async def census_dates(self) -> list[str]:
        body = await self._get("/admin/v1/census")
        return [s["date"] for s in body["snapshots"]]

    async def take_census(self, day: str) -> dict[str, Any]:
        return await self._post("/admin/v1/census", {"date": day})

    async def pause(self, client_id: str, reason: str) -> dict[str, Any]:
        return await self._post(f"/admin/v1/clients/{client_id}/pause", {"reason": reason})

    async def flag_anomaly(self, client_id: str, figures: dict[str, Any]) -> dict[str, Any]:
        return await self._post(f"/admin/v1/clients/{client_id}/anomalies", figures)

    async def backups(self, client_id: str) -> list[dict[str, Any]]:
        body = await self._get(f"/admin/v1/clients/{client_id}/backups")
        return list(body["backups"])

    async def start_backup(self, client_id: str) -> dict[str, Any]:
        return await self._post(f"/admin/v1/clients/{client_id}/backups", {})

    async def restore_drill(self) -> dict[str, Any]:
        return await self._post("/admin/v1/backups/drill", {})
