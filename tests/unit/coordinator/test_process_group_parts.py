"""The parts of several coordinator processes: shared buckets, the leader lock, coherence.

Real files, real locks, real processes where the point is sharing between processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

from coordinator.coherence import CoherenceBoard, LogFollower
from coordinator.follower import held_owner
from coordinator.hub import WorkerHub, WorkerLink
from coordinator.leader import Leadership
from coordinator.rate_limit import RateLimiter
from coordinator.shared_limits import SharedRateLimiter, reset_table
from eventlog.sqlite import open_engine
from eventlog.store import SqliteEventStore, StoredEvent
from tests.unit.coordinator.process_group_children import hold_lock, take
from tests.unit.eventlog.event_store_contract import created
from workers.main import SharedLease, WorkerSession


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_limiters_on_one_table_share_a_clients_bucket(tmp_path: Path) -> None:
    table = tmp_path / "rate-limits"
    reset_table(table)
    clock = Clock()
    a, b = SharedRateLimiter(table, clock), SharedRateLimiter(table, clock)
    allowed = [(a if n % 2 else b).acquire("client", 10, 20).allowed for n in range(40)]
    assert allowed.count(True) == 20  # one burst between the two, not one each
    clock.now += 1.0
    assert [a.acquire("client", 10, 20).allowed for _ in range(12)].count(True) == 10
    assert b.acquire("other", 10, 20).allowed  # another client has a bucket of its own
    b.charge("client", 15)  # work done, paid after: the debt is everyone's
    clock.now += 1.0
    assert not a.acquire("client", 10, 20).allowed
    a.close()
    b.close()


def test_processes_taking_at_once_never_take_more_than_the_bucket(tmp_path: Path) -> None:
    table = tmp_path / "rate-limits"
    reset_table(table)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=take, args=(str(table), 400, out)) for _ in range(3)]
    for p in procs:
        p.start()
    taken = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sum(taken) == 100, taken  # the slot lock makes each take exact


def test_a_full_neighbourhood_falls_back_to_a_bucket_of_this_process(tmp_path: Path) -> None:
    limiter = SharedRateLimiter(tmp_path / "rate-limits", Clock())
    # every probe lands on the same slots: eight clients fill them, the ninth falls back
    for n in range(8):
        limiter._hash = lambda client_id, n=n: 7 + n * 65_536 * 2  # type: ignore[method-assign]
        assert limiter.acquire(f"c{n}", 1, 5).allowed
    limiter._hash = lambda client_id: 7 + 9 * 65_536 * 2  # type: ignore[method-assign]
    assert limiter.acquire("ninth", 1, 5).allowed
    assert limiter.fallbacks == 1
    assert isinstance(limiter, RateLimiter)


def test_one_leader_at_a_time_and_takeover_when_it_goes(tmp_path: Path) -> None:
    first, second = Leadership(tmp_path), Leadership(tmp_path)
    assert first.try_acquire()
    assert not second.try_acquire()
    first.publish("http://127.0.0.1:1234")
    assert '"http://127.0.0.1:1234"' in first.address_file.read_text()
    first.release()  # as the kernel does when the holder dies
    assert second.try_acquire() and second.is_leader and second.gained.is_set()
    second.release()


def test_the_lock_of_a_killed_leader_is_taken_over(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_lock, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(30)
    mine = Leadership(tmp_path)
    assert not mine.try_acquire()
    holder.kill()
    holder.join(10)
    assert mine.try_acquire()
    mine.release()


class Evictions:
    def __init__(self) -> None:
        self.seen: list[StoredEvent] = []

    def apply(self, events: Any) -> None:
        self.seen.extend(events)


def test_the_log_follower_applies_what_any_process_appended(tmp_path: Path) -> None:
    path = tmp_path / "control.sqlite3"
    ours = SqliteEventStore(open_engine(path))
    ours.append([created(1)], actor="before")
    theirs = SqliteEventStore(open_engine(path))  # another process's engine on the file
    evictions = Evictions()
    follower = LogFollower(ours, evictions)
    assert follower.poll_once() == 0  # starts at the head: the past is already applied
    theirs.append([created(2), created(3)], actor="elsewhere")
    assert follower.poll_once() == 2
    assert [e.actor for e in evictions.seen] == ["elsewhere", "elsewhere"]
    assert follower.poll_once() == 0

    async def run_briefly() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(LogFollower(ours, evictions, poll_s=0.01).run(stop))
        await asyncio.sleep(0.05)
        theirs.append([created(4)], actor="later")
        for _ in range(100):
            if evictions.seen[-1].actor == "later":
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(run_briefly())
    assert evictions.seen[-1].actor == "later"


def _link(worker_id: str, held: dict[str, int]) -> WorkerLink:
    link = WorkerLink(worker_id=worker_id, pid=1, socket=None)  # type: ignore[arg-type]
    link.held = held
    return link


def test_a_follower_routes_to_the_holder_at_the_highest_epoch() -> None:
    hub = WorkerHub("secret")
    hub.links["w1"] = _link("w1", {"t": 5, "u": 1})
    hub.links["w2"] = _link("w2", {"t": 9})
    found = held_owner(hub, "t")
    assert found is not None and found[0].worker_id == "w2" and found[1] == 9
    hub.links["w2"].alive = False  # a dead holder is no holder
    found = held_owner(hub, "t")
    assert found is not None and found[0].worker_id == "w1"
    assert held_owner(hub, "nobody") is None


def test_only_the_leaders_acknowledgements_extend_a_shared_lease() -> None:
    lease = SharedLease()
    follower = WorkerSession(None, None, 1.0, lease)  # type: ignore[arg-type]
    leader = WorkerSession(None, None, 1.0, lease)  # type: ignore[arg-type]
    follower._beats_sent[1] = time.monotonic()
    follower._on_heartbeat_ack(1, False)
    assert not lease.valid() and not follower.lease_valid()
    leader._beats_sent[1] = time.monotonic()
    leader._on_heartbeat_ack(1, True)
    assert lease.valid() and follower.lease_valid()  # one lease for every session
    lease.extend(0)  # never shortened
    assert lease.valid()


def test_a_command_waits_until_every_live_process_has_applied_it(tmp_path: Path) -> None:
    clock = Clock()
    board = CoherenceBoard(tmp_path / "coherence", 3, clock)
    board.post(0, 10)
    board.post(1, 7)
    assert board.behind(0, 10) == [1]  # process 2 never posted: not running, not waited on
    clock.now += 2.0  # process 1 stopped posting: gone, nobody waits on it either
    assert board.behind(0, 10) == []

    async def scenario() -> tuple[bool, bool]:
        board.post(1, 7)
        waiting = asyncio.create_task(board.wait_applied(0, 10, timeout_s=5.0))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        board.post(1, 10)
        done = await waiting
        late = await CoherenceBoard(tmp_path / "coherence", 3, clock).wait_applied(
            0, 11, timeout_s=0.0
        )
        return done, late

    assert asyncio.run(scenario()) == (True, False)
    board.close()
