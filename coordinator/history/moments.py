"""Moments: RFC 3339 input, and the event store's ``occurred_at`` text compared with it.

Pure: the standard library only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

STORED_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
# Sorts after every stored time (whatever its format): "until the end of the log".
END_OF_TIME = "~"
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_moment(text: str) -> datetime:
    """An RFC 3339 time with its offset, as an aware UTC datetime; ValueError otherwise."""
    m = _RFC3339.fullmatch(text.strip()) if len(text) <= 64 else None
    if m is None:
        raise ValueError(
            "give a time in RFC 3339 with an offset, e.g. 2026-03-03T12:00:00Z "
            "(a date alone or a time without Z or an offset is ambiguous)"
        )
    day, clock, fraction, offset = m.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}").astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{text[:64]!r} is not a valid time") from None


def stored_time(moment: datetime) -> str:
    """``moment`` written the way the event store writes ``occurred_at``."""
    return moment.astimezone(UTC).strftime(STORED_TIME)


def read_bound(moment: datetime) -> str:
    """A stored-text upper bound sure to include every event at or before ``moment``.

    A second wider than needed: ``occurred_at`` written without microseconds sorts
    after the same second with them, so the exact cut is made on the folded side.
    """
    try:
        return stored_time(moment + timedelta(seconds=1))
    except OverflowError:
        return END_OF_TIME


def normal_time(occurred_at: str) -> str:
    """A stored ``occurred_at`` in the store's own format, which sorts as text."""
    if len(occurred_at) == 27 and occurred_at.endswith("Z"):
        return occurred_at
    try:
        return stored_time(parse_moment(occurred_at))
    except ValueError:
        return END_OF_TIME  # unreadable: after every moment, so never folded in by mistake
