"""Token buckets per client, on a fake clock."""

from __future__ import annotations

from coordinator.rate_limit import RateLimiter, cost_tokens, over_rate_message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_retry_after_in_whole_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert all(limiter.acquire("a", rate=10, burst=5).allowed for _ in range(5))
    refused = limiter.acquire("a", rate=10, burst=5)
    assert not refused.allowed and refused.retry_after == 1  # 0.1 s rounds up to 1
    clock.now += 0.1
    assert limiter.acquire("a", rate=10, burst=5).allowed
    assert not limiter.acquire("a", rate=10, burst=5).allowed


def test_slow_rates_ask_for_longer_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert limiter.acquire("a", rate=0.25, burst=1).allowed
    assert limiter.acquire("a", rate=0.25, burst=1).retry_after == 4


def test_clients_have_separate_buckets() -> None:
    limiter = RateLimiter(clock=Clock())
    for _ in range(3):
        limiter.acquire("a", rate=1, burst=3)
    assert not limiter.acquire("a", rate=1, burst=3).allowed
    assert limiter.acquire("b", rate=1, burst=3).allowed


def test_refused_requests_take_no_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("a", rate=1, burst=1)
    for _ in range(100):
        assert not limiter.acquire("a", rate=1, burst=1).allowed
    clock.now += 1.0
    assert limiter.acquire("a", rate=1, burst=1).allowed


def test_a_higher_tier_applies_to_the_next_request() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    while limiter.acquire("a", rate=25, burst=50).allowed:
        pass
    clock.now += 0.1
    # at the free rate 0.1 s refills 2.5 tokens; at the premium rate about 500
    assert sum(limiter.acquire("a", rate=5000, burst=10_000).allowed for _ in range(400)) == 400


def test_memory_stays_bounded_and_idle_clients_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(max_clients=100, clock=clock)
    for i in range(100):
        limiter.acquire(f"c{i}", rate=10, burst=10)
    clock.now += 120
    limiter.acquire("new", rate=10, burst=10)
    assert len(limiter) == 1
    for i in range(1000):
        limiter.acquire(f"busy{i}", rate=10, burst=10)
    assert len(limiter) <= 100


def test_zero_rate_means_unlimited() -> None:
    limiter = RateLimiter(clock=Clock())
    assert all(limiter.acquire("a", rate=0, burst=0).allowed for _ in range(1000))


def test_work_reported_after_a_request_is_charged_as_debt() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert limiter.acquire("c", rate=10, burst=20).allowed
    # A scan of 500,000 rows costs 50 tokens: more than the bucket holds, down to -burst.
    limiter.charge("c", cost_tokens(500_000))
    refused = limiter.acquire("c", rate=10, burst=20)
    assert not refused.allowed and refused.retry_after == 3  # (1 + 20) / 10 s
    clock.now += 2.0
    assert not limiter.acquire("c", rate=10, burst=20).allowed
    clock.now += 1.0
    assert limiter.acquire("c", rate=10, burst=20).allowed


def test_cost_of_a_client_without_a_bucket_is_ignored() -> None:
    limiter = RateLimiter(clock=Clock())
    limiter.charge("never-seen", 100.0)  # no rate limit applied to it: nothing to charge
    assert len(limiter) == 0
    assert cost_tokens(0) == 0 and cost_tokens(-5) == 0


def test_fewer_requests_than_the_rate_can_be_over_it_and_the_refusal_says_why() -> None:
    """A graph search that compares 3,600 vectors counts 1.36: 4,500 such requests a
    second (6,120 counted) are over a rate of 5,000 requests/s once the burst of 10,000
    is spent, after about 10,000 / 1,120 = 8.9 s, and the message says how they count."""
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    refused = None
    for i in range(60_000):  # 4,500 requests a second for up to 13.3 s
        clock.now = 1000.0 + i / 4500
        decision = limiter.acquire("a", rate=5000, burst=10_000)
        if not decision.allowed:
            refused = decision
            break
        limiter.charge("a", cost_tokens(3600))
    assert refused is not None and 8.5 < i / 4500 < 9.3  # when the burst ran out
    message = over_rate_message("premium", 5000, 10_000, refused.retry_after)
    assert message == (
        "Over the premium tier's rate of 5000 requests/s (burst 10000; a request counts 1"
        " plus 1 per 10,000 rows or vectors it examined); retry after 1 s."
    )
