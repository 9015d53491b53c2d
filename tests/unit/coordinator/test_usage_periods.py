"""Usage periods and the census: a day's usage is in the census covering it, exactly once.

The census dated D (due at 00:05 on D) sums the ``UsageRecorded`` periods that
began on D-1. The meter flushes on UTC boundaries of its interval and at
midnight, and the census flushes what was counted so far before it sums, so no
period is left between two censuses whatever the interval and whenever the
coordinator started.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import coordinator.accounts.uow as uow_module
from coordinator.accounts import Accounts, CreateClient
from coordinator.census import CensusTaker
from coordinator.usage import UsageMeter, next_flush_delay


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "interval_s", "expected_s"),
    [
        ("2027-03-04T10:23:00", 3600, 37 * 60),  # the next whole hour
        ("2027-03-04T10:00:00", 3600, 3600),  # on a boundary: the one after
        ("2027-03-04T23:50:00", 7000, 600),  # 7000 s does not divide a day: midnight first
        ("2027-03-04T23:59:59.500000", 1, 0.5),
        ("2027-03-04T12:00:00", 86400 * 2, 12 * 3600),  # longer than a day: still midnight
    ],
)
def test_flushes_fall_on_interval_boundaries_and_never_span_midnight(
    now: str, interval_s: float, expected_s: float
) -> None:
    assert next_flush_delay(at(now), interval_s) == pytest.approx(expected_s)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def iso(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def census_queries(path: str) -> dict[str, int]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][1:]
    return {row["client_id"]: row["usage_24h"]["queries"] for row in rows}


async def test_usage_counted_before_midnight_is_in_that_days_census_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    midnight = at("2027-03-05T00:00:00")
    clock = Clock(midnight - timedelta(minutes=20))  # the meter's period began at 23:40
    monkeypatch.setattr(uow_module, "utc_now", clock.iso)  # events happen on the same clock
    accounts = Accounts(tmp_path / "control.sqlite3", b"p" * 32)
    client = (await accounts.handle(CreateClient(name="a", email="a@x.test"))).client_id
    meter = UsageMeter(accounts, clock=clock)
    meter.record_queries(client, 7)  # counted before midnight, not yet flushed
    clock.now = midnight + timedelta(minutes=5)  # the census is due at 00:05
    meter.record_queries(client, 2)  # same open period, which began on the 4th
    census = CensusTaker(accounts, tmp_path / "archive", clock=clock, flush_usage=meter.flush)

    first, taken = await census.take("2027-03-05", "scheduler")
    assert taken and census_queries(first.data["archive"]) == {client: 9}
    # The census split the period at 00:05: what is counted from then on is the 5th's.
    clock.now = midnight + timedelta(hours=10)
    meter.record_queries(client, 5)
    await meter.flush()
    second, _ = await census.take("2027-03-06", "scheduler")
    assert census_queries(second.data["archive"]) == {client: 5}
