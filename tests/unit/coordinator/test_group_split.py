"""Members of a coordinator group on several hosts (coordinator/membership.py): a
client's rate split over the live rate domains, each host's own rate table, and the
leader's address from the membership rows rather than a file."""

from __future__ import annotations

from pathlib import Path

from coordinator.follower import LeaderClient
from coordinator.membership import SplitRateLimiter
from coordinator.rate_limit import RateLimiter
from coordinator.shared_limits import table_path


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _allowed(limiter: RateLimiter, client: str, rate: float, burst: float, asks: int) -> int:
    return sum(limiter.acquire(client, rate, burst).allowed for _ in range(asks))


def test_each_domain_enforces_its_share_of_rate_and_burst() -> None:
    clock = Clock()
    domains = 3
    limiters = [SplitRateLimiter(RateLimiter(clock=clock), lambda: domains) for _ in range(3)]
    # burst 30 over three domains: 10 at once from each, 30 in all (not 90)
    assert [_allowed(x, "c1", 15.0, 30.0, 50) for x in limiters] == [10, 10, 10]
    clock.now += 2.0  # rate 15/s over three: 5/s each, 10 each in two seconds
    assert [_allowed(x, "c1", 15.0, 30.0, 50) for x in limiters] == [10, 10, 10]
    domains = 1  # the others are gone: this domain enforces the whole rate again
    clock.now += 2.0
    assert _allowed(limiters[0], "c1", 15.0, 30.0, 50) == 30


def test_a_small_burst_still_admits_one_request_per_domain() -> None:
    limiter = SplitRateLimiter(RateLimiter(clock=Clock()), lambda: 4)
    assert _allowed(limiter, "c1", 1.0, 2.0, 5) == 1  # 2/4 would admit nothing, ever
    assert limiter.acquire("c2", 0.0, 0.0).allowed  # no limit stays no limit


def test_charges_reach_the_domains_bucket() -> None:
    limiter = SplitRateLimiter(RateLimiter(clock=Clock()), lambda: 2)
    assert _allowed(limiter, "c1", 10.0, 20.0, 3) == 3  # 7 of the share's 10 left
    limiter.charge("c1", 7.0)
    assert not limiter.acquire("c1", 10.0, 20.0).allowed


def test_a_rate_table_per_host_when_the_group_spans_hosts(tmp_path: Path) -> None:
    assert table_path(tmp_path) == tmp_path / "rate-limits"  # one host: as before
    a, b = table_path(tmp_path, "boot-a"), table_path(tmp_path, "boot-b")
    assert a != b and a.parent == b.parent == tmp_path
    assert table_path(tmp_path, "boot-a") == a


def test_the_leaders_address_from_a_lookup(tmp_path: Path) -> None:
    where: list[str | None] = [None]
    client = LeaderClient(lambda: where[0], "secret")
    assert client.leader_url() is None
    where[0] = "http://10.0.0.2:4002"
    assert client.leader_url() == "http://10.0.0.2:4002"
    on_file = LeaderClient(tmp_path / "coordinator-leader.json", "secret")
    assert on_file.leader_url() is None  # no file yet
    (tmp_path / "coordinator-leader.json").write_text('{"url": "http://127.0.0.1:9"}')
    assert on_file.leader_url() == "http://127.0.0.1:9"
