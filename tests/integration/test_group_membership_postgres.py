"""The coordinator group's membership rows in PostgreSQL (coordinator/membership.py):
what members on different hosts share through the database instead of ``run/`` files.

No clocks are raced here: every step is a heartbeat called directly, and what the other
members read afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from coordinator.leader import Leadership
from coordinator.membership import GroupMembership
from eventlog.database import open_control_engine
from eventlog.schema import ensure_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_url: str, tmp_path: Path) -> Iterator[Engine]:
    engine = open_control_engine(pg_url, tmp_path / "unused.sqlite3")
    ensure_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def test_the_table_comes_with_the_migrations(engine: Engine) -> None:
    assert "coordinator_members" in set(inspect(engine).get_table_names())


def test_members_see_each_other_and_the_leaders_address(engine: Engine) -> None:
    a = GroupMembership(engine, "boot-a", "boot-a:run")
    b = GroupMembership(engine, "boot-b", "boot-b:run")  # another host
    c = GroupMembership(engine, "boot-b", "boot-b:run")  # b's host and run dir: one domain
    for m in (a, b, c):
        m.beat()
    a.beat()
    assert a.domains() == 2  # two hosts' rate domains, not three members
    assert b.leader_url() is None  # nobody leads yet
    a.publish_leader("http://10.0.0.1:4001")
    b.beat()
    assert b.leader_url() == "http://10.0.0.1:4001"
    # b takes over (a's advisory lock went with its session): one leader, b's address
    b.publish_leader("http://10.0.0.2:4002")
    for m in (a, c):
        m.beat()
        assert m.leader_url() == "http://10.0.0.2:4002"
    with engine.connect() as conn:
        leaders = conn.execute(
            text("SELECT member_id FROM coordinator_members WHERE is_leader")
        ).all()
    assert [row.member_id for row in leaders] == [b.member_id]


def test_a_coherent_command_waits_for_every_live_member_and_not_for_a_gone_one(
    engine: Engine,
) -> None:
    a = GroupMembership(engine, "boot-a", "boot-a:run")
    b = GroupMembership(engine, "boot-b", "boot-b:run")
    for m in (a, b):
        m.post(0, 10)
        m.beat()
    assert a.behind(0, 10) == []
    assert a.behind(0, 11) == [b.member_id]  # b has not applied seq 11
    assert asyncio.run(a.wait_applied(0, 11, timeout_s=0.0)) is False
    b.post(0, 11)
    b.beat()
    assert a.behind(0, 11) == [] and asyncio.run(a.wait_applied(0, 11)) is True
    b.post(0, 5)  # an applied seq never goes back
    b.beat()
    assert a.behind(0, 11) == []
    b.leave()  # stopped: nobody waits on it, and the rate split is over one domain again
    assert a.behind(0, 99) == []
    a.beat()
    assert a.domains() == 1


def test_a_member_whose_heartbeat_stopped_is_not_waited_for(engine: Engine) -> None:
    a = GroupMembership(engine, "boot-a", "boot-a:run")
    b = GroupMembership(engine, "boot-b", "boot-b:run")
    a.beat()
    b.beat()
    assert a.behind(0, 1) == [b.member_id]
    with engine.begin() as conn:  # b's last heartbeat, as it looks after b was killed
        conn.execute(
            text(
                "UPDATE coordinator_members SET last_seen = last_seen - interval '1 minute' "
                "WHERE member_id = :b"
            ),
            {"b": b.member_id},
        )
    assert a.behind(0, 1) == []
    a.beat()
    assert a.domains() == 1


def test_leadership_on_the_memberships_pool_never_lends_its_lock(
    engine: Engine, tmp_path: Path
) -> None:
    # One engine for both, as a group member runs them (vectorpanda/server/group.py).
    member = GroupMembership(engine, "boot-a", "boot-a:run")
    first = Leadership(tmp_path / "a", engine)
    second = Leadership(tmp_path / "b", engine)
    try:
        assert first.try_acquire()
        for _ in range(20):  # the heartbeat checks connections out and back in meanwhile
            member.beat()
            assert not second.try_acquire()
        assert first.still_held()
        first.release()
        assert second.try_acquire()  # the lock went with the leader's session
    finally:
        first.release()
        second.release()
