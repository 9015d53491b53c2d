"""The daily census: every client's tier, status, data and last-day usage, archived.

``<archive>/census/YYYY-MM-DD.jsonl.gz``: the first line is a header (date,
taken_at, the event log's head seq and hash, signed as ``head_anchor`` when an
anchor key is configured), then one line per client. The
file is written to a temp name, fsynced and renamed, and its SHA-256 recorded
in ``CensusSnapshotTaken`` with the same head hash, so the archive, the event
and the log vouch for each other. The date names the UTC day the census was
taken; usage is the 24 hours before that day began. A census for a date that
already has one is a no-op that returns the recorded event. Archives are never
deleted here.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import date as Date
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from coordinator.accounts import Accounts, RecordCensus
from coordinator.accounts.lifecycle import find_census
from coordinator.usage import RECORDING_SLACK, iso, seq_before, utc_clock
from eventlog.anchors import HeadAnchorer
from eventlog.events import CensusSnapshotTaken, ClientStatus, RestoreDrillCompleted, UsageRecorded
from eventlog.records import MAX_READ_LIMIT, StoredEvent

log = logging.getLogger("vectorpanda.census")
TenantFigures = Callable[[str, str], Awaitable[dict[str, Any]]]
USAGE_FIELDS = ("requests", "rejected", "queries", "vectors_upserted")


def archive_path(archive_dir: Path, day: str) -> Path:
    return archive_dir / "census" / f"{day}.jsonl.gz"


def encode_archive(lines: list[dict[str, Any]]) -> bytes:
    """Gzipped JSON lines, byte-for-byte reproducible (no mtime or name in the header)."""
    raw = b"".join(orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n" for line in lines)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    return out.getvalue()


def write_durably(path: Path, data: bytes) -> None:
    """Write-temp + fsync + rename + fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CensusTaker:
    """Takes the census for a date, at most once per date."""

    def __init__(
        self,
        accounts: Accounts,
        archive_dir: Path,
        figures: TenantFigures | None = None,
        clock: Callable[[], datetime] = utc_clock,
        flush_usage: Callable[[], Awaitable[object]] | None = None,
        anchorer: HeadAnchorer | None = None,
        on_anchor: Callable[[dict[str, Any]], Awaitable[object]] | None = None,
    ) -> None:
        self._accounts = accounts
        self._archive = archive_dir
        self._figures = figures
        self._clock = clock
        # Records the usage counted so far, so a period that began before the census
        # day ended is in this census and not left between two of them.
        self._flush_usage = flush_usage
        # Signs the log head into the archive and <data>/anchors, so the archive can
        # later prove how long the log was even if its tail is cut.
        self._anchorer = anchorer
        # Told each census's signed head (once a day): the operators' daily anchor email.
        self._on_anchor = on_anchor
        self._lock = asyncio.Lock()

    async def list(self) -> list[StoredEvent]:
        """Every census recorded, oldest first."""

        def body(tx: Any) -> list[StoredEvent]:
            out: list[StoredEvent] = []
            after = 0
            while True:
                page = tx.events.read(after, MAX_READ_LIMIT, None, CensusSnapshotTaken.event_type)
                out.extend(page)
                if len(page) < MAX_READ_LIMIT:
                    return out
                after = page[-1].seq

        return await self._accounts.uow.read(body)

    async def take(self, day: str, actor: str) -> tuple[StoredEvent, bool]:
        """The census event for ``day`` and whether this call took it."""
        Date.fromisoformat(day)  # ValueError for anything but YYYY-MM-DD
        async with self._lock:
            existing = await self._accounts.uow.read(lambda tx: find_census(tx, day))
            if existing is not None:
                return existing, False
            if self._flush_usage is not None:
                await self._flush_usage()
            clients = await self._accounts.list_clients()
            usage = await self._usage(day)
            rows = []
            for view in clients:
                figures: dict[str, Any] = {}
                if self._figures is not None:
                    try:
                        figures = await self._figures(view.client_id, view.status)
                    except Exception as exc:  # a census must not fail for one tenant
                        figures = {"error": str(exc)[:200]}
                rows.append(
                    {
                        "client_id": view.client_id,
                        "tier": view.tier,
                        "status": view.status,
                        "location": figures.get("location"),
                        "collections": figures.get("collections", []),
                        "vectors": int(figures.get("vectors", 0)),
                        "bytes": int(figures.get("bytes", 0)),
                        "usage_24h": usage.get(view.client_id, dict.fromkeys(USAGE_FIELDS, 0)),
                    }
                )
            totals = {
                "clients": len(rows),
                "paused": sum(1 for r in rows if r["status"] == ClientStatus.PAUSED),
                "vectors": sum(r["vectors"] for r in rows),
                "bytes": sum(r["bytes"] for r in rows),
                **{f: sum(r["usage_24h"][f] for r in rows) for f in USAGE_FIELDS},
            }
            head = await self._accounts.uow.read(lambda tx: tx.events.head())
            taken_at = iso(self._clock())
            header: dict[str, Any] = {
                "census": day,
                "taken_at": taken_at,
                "head_seq": head.seq,
                "head_hash": head.hash,
                "totals": totals,
            }
            drill = await self._accounts.uow.read(_last_drill)
            if drill is not None:
                # The newest restore drill: can the backups actually be restored?
                header["restore_drill"] = {
                    **drill.data,
                    "seq": drill.seq,
                    "occurred_at": drill.occurred_at,
                }
            if self._anchorer is not None:
                anchorer = self._anchorer
                header["head_anchor"] = await asyncio.to_thread(
                    anchorer.anchor, head.seq, head.hash, taken_at, f"census-{day}"
                )
            data = encode_archive([header, *rows])
            path = archive_path(self._archive, day)
            await asyncio.to_thread(write_durably, path, data)
            stored = await self._accounts.handle(
                RecordCensus(
                    date=day,
                    archive=str(path),
                    sha256=hashlib.sha256(data).hexdigest(),
                    clients=len(rows),
                    totals=totals,
                    head_seq=head.seq,
                    head_hash=head.hash,
                    actor=actor,
                )
            )
            if self._on_anchor is not None and "head_anchor" in header:
                try:
                    await self._on_anchor(header["head_anchor"])
                except Exception:
                    # The census is recorded; the anchor is in its archive and <data>/anchors.
                    log.exception("could not send the census's signed head to the operators")
            return stored, True

    async def _usage(self, day: str) -> dict[str, dict[str, int]]:
        """Usage per client of periods starting in the 24 hours before ``day``."""
        end = datetime.fromisoformat(day + "T00:00:00+00:00")
        lo, hi = iso(end - timedelta(days=1)), iso(end)

        def body(tx: Any) -> dict[str, dict[str, int]]:
            # Usage of a period starting in the window was recorded after the window began.
            after = seq_before(tx, iso(end - timedelta(days=1) - RECORDING_SLACK))
            sums: dict[str, dict[str, int]] = {}
            while True:
                page = tx.events.read(after, MAX_READ_LIMIT, None, UsageRecorded.event_type)
                for stored in page:
                    event = stored.to_event()
                    assert isinstance(event, UsageRecorded)
                    if lo <= event.period_start < hi:
                        row = sums.setdefault(event.client_id, dict.fromkeys(USAGE_FIELDS, 0))
                        for f in USAGE_FIELDS:
                            row[f] += getattr(event, f)
                if len(page) < MAX_READ_LIMIT:
                    return sums
                after = page[-1].seq

        result: dict[str, dict[str, int]] = await self._accounts.uow.read(body)
        return result


def _last_drill(tx: Any) -> StoredEvent | None:
    """The newest RestoreDrillCompleted, if any drill ran."""
    last, after = None, 0
    while True:
        page = tx.events.read(after, MAX_READ_LIMIT, None, RestoreDrillCompleted.event_type)
        if page:
            last, after = page[-1], page[-1].seq
        if len(page) < MAX_READ_LIMIT:
            return last
