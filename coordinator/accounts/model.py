"""Accounts domain: tiers, statuses, scopes, API key format and the decisions on them.

Pure: no web framework, ORM or broker imports.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

# Tiers, statuses and scopes are named once, in the event catalogue (the accounts
# modules import them from here).
from eventlog.events import CLIENT_ID_PATTERN, ClientStatus, Scope, Tier

SCOPE_ORDER: tuple[Scope, ...] = (Scope.READ, Scope.WRITE, Scope.MANAGE)


class AccountsError(Exception):
    """Base of the accounts domain errors."""


class ClientNotFound(AccountsError):
    """No such client (or it was deleted)."""


class ApiKeyNotFound(AccountsError):
    """No such key for this client."""


class InvalidCommand(AccountsError):
    """A command whose fields break a domain rule."""


class StoreUnavailable(AccountsError):
    """The control-plane store cannot be written (disk full, read-only, I/O error).

    The transaction was rolled back: nothing of the action was recorded.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            "The control-plane store cannot be written right now "
            f"({reason}); nothing was changed. Retry once the operators have fixed it."
        )
        self.reason = reason


# Client ids become directory names on the workers, hence the tight alphabet.
CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)
# token_urlsafe(32) yields 43 characters; the upper bound stops pathological input early.
_API_KEY_RE = re.compile(r"vp_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
MAX_API_KEY_LENGTH = 3 + 16 + 1 + 128
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 254
MAX_LABEL_LENGTH = 100


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A client row of the write model."""

    client_id: str
    name: str
    email: str
    tier: Tier
    status: ClientStatus
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key row: the digest of the key, never the key itself."""

    key_id: str
    client_id: str
    label: str | None
    scopes: tuple[Scope, ...]
    digest: str = field(repr=False)
    created_at: str
    revoked_at: str | None = None
    expires_at: str | None = None
    # Normalised CIDR texts; empty: usable from any address.
    allowed_cidrs: tuple[str, ...] = ()
    # Coarse (see key_policy.LAST_USED_GRANULARITY_S); not an admin action, so no event.
    last_used_at: str | None = None


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    """An operator row: the digest of the token, never the token."""

    operator_id: str
    name: str
    email: str
    digest: str = field(repr=False)
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid API key speaks for, as the data plane needs it."""

    client_id: str
    key_id: str
    scopes: frozenset[str]
    digest: str = field(repr=False)
    tier: str
    status: str
    # Epoch seconds, checked on every use (the key cache too); None: never expires.
    expires_at_s: float | None = None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def new_client_id() -> str:
    """'c' followed by 16 random lowercase hex characters."""
    return "c" + secrets.token_hex(8)


def new_key_id() -> str:
    """16 random lowercase hex characters: the public lookup handle of a key."""
    return secrets.token_hex(8)


def new_api_key(key_id: str) -> str:
    """``vp_<key_id>_<secret>`` with a fresh 32-byte URL-safe secret."""
    return f"vp_{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(presented: str) -> tuple[str, str] | None:
    """Split a presented key into (key_id, secret), or None if it is malformed."""
    if not isinstance(presented, str) or len(presented) > MAX_API_KEY_LENGTH:
        return None
    match = _API_KEY_RE.fullmatch(presented)
    if match is None:
        return None
    return match.group(1), match.group(2)


def key_digest(pepper: bytes, presented: str) -> str:
    """HMAC-SHA256 of the whole presented key under the server pepper, hex."""
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...) without its object
    return hmac.digest(pepper, presented.encode("utf-8"), "sha256").hex()


def digest_matches(pepper: bytes, presented: str, digest: str) -> bool:
    """Constant-time check that ``presented`` is the key behind ``digest``."""
    return hmac.compare_digest(key_digest(pepper, presented), digest)


def _clean_text(value: str, field: str, max_length: int) -> str:
    text = value.strip()
    if not text or len(text) > max_length:
        raise InvalidCommand(f"{field} must be 1-{max_length} characters")
    if _CONTROL_RE.search(text):
        raise InvalidCommand(f"{field} must not contain control characters")
    return text


def valid_name(name: str) -> str:
    """The client's display name, trimmed."""
    return _clean_text(name, "name", MAX_NAME_LENGTH)


def valid_email(email: str) -> str:
    """A plausible contact address (shape only; delivery proves the rest)."""
    text = email.strip()
    if len(text) > MAX_EMAIL_LENGTH or not _EMAIL_RE.fullmatch(text):
        raise InvalidCommand("email must look like name@example.com")
    return text


def valid_tier(tier: str) -> Tier:
    try:
        return Tier(tier)
    except ValueError:
        raise InvalidCommand("tier must be one of free, standard, premium") from None


def valid_label(label: str | None) -> str | None:
    return None if label is None else _clean_text(label, "label", MAX_LABEL_LENGTH)


def valid_scopes(scopes: Iterable[str]) -> tuple[Scope, ...]:
    """A non-empty subset of read/write/manage, in canonical order."""
    wanted = set(scopes)
    unknown = wanted - {s.value for s in Scope}
    if unknown:
        raise InvalidCommand(f"unknown scopes: {', '.join(sorted(unknown))}")
    if not wanted:
        raise InvalidCommand("scopes must name at least one of read, write, manage")
    return tuple(s for s in SCOPE_ORDER if s.value in wanted)


BILLING_KINDS = ("invoice_issued", "payment_received", "payment_failed")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
MAX_REFERENCE_LENGTH = 200
MAX_AMOUNT_CENTS = 10**15


def valid_billing_kind(kind: str) -> str:
    if kind not in BILLING_KINDS:
        raise InvalidCommand(f"kind must be one of {', '.join(BILLING_KINDS)}")
    return kind


def valid_amount(amount_cents: int) -> int:
    if isinstance(amount_cents, bool) or not 0 <= amount_cents <= MAX_AMOUNT_CENTS:
        raise InvalidCommand(f"amount_cents must be between 0 and {MAX_AMOUNT_CENTS}")
    return amount_cents


def valid_currency(currency: str) -> str:
    if not _CURRENCY_RE.fullmatch(currency):
        raise InvalidCommand("currency must be a three-letter ISO 4217 code such as EUR")
    return currency


def valid_reference(reference: str) -> str:
    return _clean_text(reference, "reference", MAX_REFERENCE_LENGTH)


MAX_REASON_LENGTH = 500


def valid_reason(reason: str | None) -> str | None:
    """Why an operator did something, trimmed (None where no reason was asked for)."""
    return None if reason is None else _clean_text(reason, "reason", MAX_REASON_LENGTH)


def valid_client_id(client_id: str) -> bool:
    return CLIENT_ID_RE.fullmatch(client_id) is not None


def live_client(client: ClientRecord | None) -> ClientRecord:
    """The client if it exists and is not deleted; a deleted client is simply gone."""
    if client is None or client.status is ClientStatus.DELETED:
        raise ClientNotFound("no such client")
    return client


def needs_revocation(key: ApiKeyRecord | None, client_id: str) -> bool:
    """Whether revoking is a change; another client's key is indistinguishable from none."""
    if key is None or key.client_id != client_id:
        raise ApiKeyNotFound("no such key for this client")
    return key.revoked_at is None


def principal_for(key: ApiKeyRecord, client: ClientRecord) -> Principal | None:
    """The principal a stored key grants, or None if it grants nothing any more."""
    if key.revoked_at is not None or client.status is ClientStatus.DELETED:
        return None
    expires_at_s = None
    if key.expires_at is not None:
        expires_at_s = datetime.fromisoformat(key.expires_at.replace("Z", "+00:00")).timestamp()
    return Principal(
        client_id=client.client_id,
        key_id=key.key_id,
        scopes=frozenset(s.value for s in key.scopes),
        digest=key.digest,
        tier=client.tier.value,
        status=client.status.value,
        expires_at_s=expires_at_s,
        networks=tuple(ipaddress.ip_network(c) for c in key.allowed_cidrs),
    )
