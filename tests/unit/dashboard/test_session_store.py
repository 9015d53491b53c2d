"""One contract for the session stores: SQLite (real file), PostgreSQL and in-memory."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from coordinator.sessions.model import (
    Role,
    SessionKind,
    hash_session_id,
    new_login_session,
    new_session_id,
    new_user_session,
)
from coordinator.sessions.store import MemorySessionStore, SessionStore, SqliteSessionStore
from eventlog.database import open_control_engine
from eventlog.schema import ensure_schema


def open_session_store(url: str | None, path: Path) -> SqliteSessionStore:
    """What the composition root does: the migrated PostgreSQL table, or the file."""
    if url is None:
        return SqliteSessionStore.at(path)
    engine = open_control_engine(url, path)
    ensure_schema(engine)
    return SqliteSessionStore(engine)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore()
        return
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    opened = open_session_store(url, tmp_path / "sessions.sqlite3")
    yield opened
    opened.close()


def test_add_get_touch_delete(store: SessionStore) -> None:
    sid = new_session_id()
    s = new_user_session(sid, "a@x.test", Role.CLIENT, "c1", "google", now=10)
    store.add(s)
    assert store.get(hash_session_id(sid)) == s
    store.touch(s.id_hash, 20)
    found = store.get(s.id_hash)
    assert found is not None and found.last_seen_at == 20 and found.role is Role.CLIENT
    assert store.delete(s.id_hash) is True
    assert store.get(s.id_hash) is None
    assert store.delete(s.id_hash) is False


def test_take_returns_a_login_once(store: SessionStore) -> None:
    s = new_login_session(new_session_id(), "google", now=0)
    store.add(s)
    taken = store.take(s.id_hash)
    assert taken is not None and taken.kind is SessionKind.LOGIN
    assert taken.state == s.state and taken.code_verifier == s.code_verifier
    assert store.take(s.id_hash) is None


def test_purge_removes_only_stale_rows(store: SessionStore) -> None:
    old = new_user_session(new_session_id(), "a@x.test", Role.CLIENT, "c1", "google", now=0)
    new = new_user_session(new_session_id(), "b@x.test", Role.OPERATOR, None, "github", now=100)
    store.add(old)
    store.add(new)
    assert store.count() == 2
    assert store.purge(older_than=50) == 1
    assert store.get(old.id_hash) is None and store.get(new.id_hash) is not None


def test_sqlite_sessions_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    s = new_user_session(new_session_id(), "a@x.test", Role.CLIENT, "c1", "google", now=5)
    first = SqliteSessionStore.at(path)
    first.add(s)
    first.close()
    again = SqliteSessionStore.at(path)
    assert again.get(s.id_hash) == s
    again.close()


def test_every_coordinator_sees_the_same_postgresql_sessions(pg_url: str, tmp_path: Path) -> None:
    a = open_session_store(pg_url, tmp_path / "a.sqlite3")
    b = open_session_store(pg_url, tmp_path / "b.sqlite3")
    try:
        user = new_user_session(new_session_id(), "a@x.test", Role.OPERATOR, None, "google", 1)
        a.add(user)
        assert b.get(user.id_hash) == user  # logged in on A, logged in on B
        b.touch(user.id_hash, 7)
        found = a.get(user.id_hash)
        assert found is not None and found.last_seen_at == 7
        assert b.delete(user.id_hash) and a.get(user.id_hash) is None  # logout is everywhere
        # One login state, redeemed on both coordinators at once: exactly one gets it.
        for _ in range(20):
            login = new_login_session(new_session_id(), "google", now=0)
            a.add(login)
            with ThreadPoolExecutor(2) as pool:
                taken = list(pool.map(lambda s, h=login.id_hash: s.take(h), (a, b)))
            assert sum(t is not None for t in taken) == 1
        assert not (tmp_path / "a.sqlite3").exists()
    finally:
        a.close()
        b.close()
