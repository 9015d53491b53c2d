"""Session expiry, rotation and token checks: pure decisions."""

from __future__ import annotations

from coordinator.sessions.model import (
    Role,
    SessionKind,
    SessionPolicy,
    actor_of,
    expiry_reason,
    hash_session_id,
    new_login_session,
    new_session_id,
    new_user_session,
    same_secret,
    touched,
    valid_cookie_value,
)

POLICY = SessionPolicy(idle_s=100, absolute_s=1000, login_timeout_s=60)


def test_user_sessions_expire_when_idle_and_at_the_absolute_limit() -> None:
    s = new_user_session(new_session_id(), "a@x.test", Role.CLIENT, "c1", "google", now=0)
    assert expiry_reason(s, POLICY, 99) is None
    assert expiry_reason(s, POLICY, 101) == "idle"
    # Activity keeps it alive, but never past the absolute limit.
    t = 0.0
    while t < 990:
        t += 90
        s = touched(s, t)
        assert expiry_reason(s, POLICY, t) is None
    assert expiry_reason(touched(s, 1001), POLICY, 1001) == "absolute"


def test_login_attempts_time_out() -> None:
    s = new_login_session(new_session_id(), "github", now=0)
    assert s.kind is SessionKind.LOGIN
    assert expiry_reason(s, POLICY, 60) is None
    assert expiry_reason(s, POLICY, 61) == "absolute"


def test_every_login_gets_fresh_ids_and_secrets() -> None:
    a = new_login_session(new_session_id(), "google", 0)
    b = new_login_session(new_session_id(), "google", 0)
    assert a.id_hash != b.id_hash and a.state != b.state
    assert a.code_verifier != b.code_verifier and a.nonce != b.nonce
    assert a.code_verifier is not None and 43 <= len(a.code_verifier) <= 128  # RFC 7636
    u = new_user_session(new_session_id(), "a@x.test", Role.CLIENT, "c1", "google", 0)
    assert u.csrf_token != a.csrf_token and u.state is None and u.code_verifier is None


def test_the_store_keeps_a_hash_of_the_cookie_value() -> None:
    sid = new_session_id()
    s = new_user_session(sid, "a@x.test", Role.CLIENT, "c1", "google", 0)
    assert s.id_hash == hash_session_id(sid) and sid not in s.id_hash
    login = new_login_session(sid, "google", 0)
    assert login.code_verifier and login.code_verifier not in repr(login)


def test_token_compare_and_cookie_shape() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret(None, "abc") and not same_secret("", "") and not same_secret("a", None)
    assert valid_cookie_value(new_session_id())
    assert not valid_cookie_value("short") and not valid_cookie_value("é" * 40)
    assert not valid_cookie_value(None)


def test_actor_is_the_email_within_the_log_limit() -> None:
    s = new_user_session(new_session_id(), "ops@x.test", Role.OPERATOR, None, "google", 0)
    assert actor_of(s) == "ops@x.test"
    long = new_user_session(new_session_id(), "o" * 80 + "@x.test", Role.OPERATOR, None, "g", 0)
    assert len(actor_of(long)) == 64
