"""API key policy: lifetimes, address allowlists and when a use is worth recording.

Pure: no framework, ORM or broker imports. Times are UTC; stored as the same
ISO-8601 text with a ``Z`` suffix as every other timestamp of the accounts.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from coordinator.accounts.model import InvalidCommand
from coordinator.tiers import limits_for

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_ALLOWED_CIDRS = 32
# last_used_at is coarse: a key's use is written at most once per this many seconds.
LAST_USED_GRANULARITY_S = 60.0


def iso_utc(moment: datetime) -> str:
    """``moment`` as stored: ISO-8601 UTC with microseconds and a ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso_utc(text: str) -> datetime:
    """A stored timestamp back as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def key_expiry(tier: str, requested: datetime | None, now: datetime) -> str | None:
    """The ``expires_at`` a new key of a ``tier`` client gets, or InvalidCommand.

    Omitted: the tier's maximum lifetime (None where the tier has none). Given: it
    must be timezone-aware, in the future and within the tier's maximum lifetime.
    """
    max_days = limits_for(tier).max_key_lifetime_days
    latest = None if max_days is None else now + timedelta(days=max_days)
    if requested is None:
        return None if latest is None else iso_utc(latest)
    if requested.tzinfo is None or requested.utcoffset() is None:
        raise InvalidCommand("expires_at must carry a timezone offset, e.g. 2030-01-31T00:00:00Z")
    if requested <= now:
        raise InvalidCommand("expires_at must be in the future")
    if latest is not None and requested > latest:
        raise InvalidCommand(
            f"expires_at is beyond the {tier} tier's maximum key lifetime of {max_days} days "
            f"(at most {iso_utc(latest)[:19]}Z)"
        )
    return iso_utc(requested)


def valid_cidrs(cidrs: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """Normalised network texts (``10.0.0.0/8``, ``2001:db8::/32``), or InvalidCommand.

    A bare address is a single host. Host bits set under the mask (``10.0.0.1/8``) are
    refused rather than silently widened: the operator meant something else.
    """
    if not cidrs:
        return ()
    if len(cidrs) > MAX_ALLOWED_CIDRS:
        raise InvalidCommand(f"allowed_cidrs may list at most {MAX_ALLOWED_CIDRS} networks")
    out: list[str] = []
    for text in cidrs:
        if not isinstance(text, str) or not text.strip() or len(text) > 64:
            raise InvalidCommand("allowed_cidrs must be CIDR strings such as 203.0.113.0/24")
        try:
            network = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError as exc:
            raise InvalidCommand(
                f"allowed_cidrs: {text[:64]!r} is not a valid CIDR ({exc})"
            ) from None
        if str(network) not in out:
            out.append(str(network))
    return tuple(out)


def networks_of(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parsed networks of already validated CIDR texts."""
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address from a socket peer or a proxy header, or None if it is not one."""
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # An IPv4 client reaching an IPv6 socket shows as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_allowed(networks: tuple[IPNetwork, ...], address: IPAddress | None) -> bool:
    """Whether a key restricted to ``networks`` may be used from ``address`` (no list: yes)."""
    if not networks:
        return True
    if address is None:
        return False
    return any(address in network for network in networks)


def expired(expires_at_s: float | None, now_s: float) -> bool:
    """Whether a key with this expiry (epoch seconds; None: never) has expired at ``now_s``."""
    return expires_at_s is not None and now_s >= expires_at_s
