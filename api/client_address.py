"""The client's address, as a key's ``allowed_cidrs`` is checked against it.

It is the socket peer, unless the peer is one of the configured trusted proxies
(``VP_TRUSTED_PROXIES``, default loopback: nginx on the same host). From a
trusted proxy it is the address the proxy reports: ``X-Real-IP`` (nginx sets it
to ``$remote_addr``, replacing whatever the client sent), else the right-most
``X-Forwarded-For`` entry (the one the proxy appended). Headers from any other
peer are ignored, so a client cannot claim an address by sending them.
"""

from __future__ import annotations

from starlette.types import Scope

from coordinator.accounts.key_policy import (
    IPAddress,
    IPNetwork,
    networks_of,
    parse_address,
    valid_cidrs,
)

DEFAULT_TRUSTED_PROXIES = "127.0.0.1/32,::1/128"


def trusted_proxy_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma-separated CIDR list (empty: trust no proxy); ValueError if malformed."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return networks_of(valid_cidrs(items))
    except Exception as exc:
        raise ValueError(f"VP_TRUSTED_PROXIES: {exc}") from None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def client_address(scope: Scope, trusted: tuple[IPNetwork, ...]) -> IPAddress | None:
    """The address the request came from (see the module docstring); None if unknown."""
    client = scope.get("client")
    peer = parse_address(client[0]) if client else None
    if peer is None or not any(peer in network for network in trusted):
        return peer
    real_ip = parse_address(_header(scope, b"x-real-ip"))
    if real_ip is not None:
        return real_ip
    forwarded = _header(scope, b"x-forwarded-for")
    if forwarded:
        last = parse_address(forwarded.rsplit(",", 1)[-1])
        if last is not None:
            return last
    return peer
