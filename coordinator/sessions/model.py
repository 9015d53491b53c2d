"""Dashboard sessions, decided by pure functions: ids, expiry, CSRF tokens.

The browser holds only a random session id; the store keeps the SHA-256 of
that id, so a copy of the session database cannot be replayed as cookies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum

COOKIE_NAME = "__Host-vp_session"


class SessionKind(StrEnum):
    LOGIN = "login"  # an OAuth round trip in flight: holds state, PKCE verifier, nonce
    USER = "user"  # a signed-in person


class Role(StrEnum):
    CLIENT = "client"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_s: int = 30 * 60
    absolute_s: int = 12 * 3600
    login_timeout_s: int = 10 * 60


@dataclass(frozen=True, slots=True)
class Session:
    """One server-side session row; ``id_hash`` is the SHA-256 of the cookie value."""

    id_hash: str
    kind: SessionKind
    created_at: float
    last_seen_at: float
    csrf_token: str
    email: str | None = None
    role: Role | None = None
    client_id: str | None = None
    provider: str | None = None
    # OAuth round trip (LOGIN sessions only)
    state: str | None = None
    code_verifier: str | None = field(default=None, repr=False)
    nonce: str | None = None


def new_session_id() -> str:
    """A fresh cookie value: 256 random bits."""
    return secrets.token_urlsafe(32)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def valid_cookie_value(value: str | None) -> bool:
    return value is not None and 20 <= len(value) <= 100 and value.isascii()


def new_login_session(session_id: str, provider: str, now: float) -> Session:
    """A session for one OAuth round trip, with fresh state, PKCE verifier and nonce."""
    return Session(
        id_hash=hash_session_id(session_id),
        kind=SessionKind.LOGIN,
        created_at=now,
        last_seen_at=now,
        csrf_token=secrets.token_urlsafe(32),
        provider=provider,
        state=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(48),
        nonce=secrets.token_urlsafe(24),
    )


def new_user_session(
    session_id: str, email: str, role: Role, client_id: str | None, provider: str, now: float
) -> Session:
    """The session a successful login gets: a new id (rotation) and a new CSRF token."""
    return Session(
        id_hash=hash_session_id(session_id),
        kind=SessionKind.USER,
        created_at=now,
        last_seen_at=now,
        csrf_token=secrets.token_urlsafe(32),
        email=email,
        role=role,
        client_id=client_id,
        provider=provider,
    )


def expiry_reason(session: Session, policy: SessionPolicy, now: float) -> str | None:
    """Why the session is no longer valid at ``now`` ("idle", "absolute"), or None."""
    if session.kind is SessionKind.LOGIN:
        return "absolute" if now - session.created_at > policy.login_timeout_s else None
    if now - session.created_at > policy.absolute_s:
        return "absolute"
    if now - session.last_seen_at > policy.idle_s:
        return "idle"
    return None


def touched(session: Session, now: float) -> Session:
    return replace(session, last_seen_at=now)


def same_secret(presented: str | None, expected: str | None) -> bool:
    """Constant-time compare of a state or CSRF token; a missing side never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def actor_of(session: Session) -> str:
    """The event-log actor for a dashboard action: the signed-in email (the log caps at 64)."""
    return (session.email or "dashboard")[:64]
