"""The tier table and the decisions made from it."""

from __future__ import annotations

import pytest

from coordinator.tiers import TIERS, dimension_refusal, limits_for, usage_limits


def test_every_tier_has_every_limit_and_higher_tiers_allow_more() -> None:
    assert list(TIERS) == ["free", "standard", "premium"]
    free, standard, premium = TIERS["free"], TIERS["standard"], TIERS["premium"]
    for lower, higher in ((free, standard), (standard, premium)):
        assert lower.max_collections < higher.max_collections
        assert lower.max_vectors < higher.max_vectors
        assert lower.max_dimension <= higher.max_dimension
        assert lower.requests_per_second < higher.requests_per_second
        assert lower.burst < higher.burst
    for limits in TIERS.values():
        assert limits.burst >= limits.requests_per_second > 0


def test_unknown_tier_gets_the_most_restrictive_limits() -> None:
    assert limits_for("gold") == TIERS["free"]


@pytest.mark.parametrize(
    ("tier", "dimension", "allowed"),
    [("free", 1536, True), ("free", 1537, False), ("standard", 4096, True), ("free", 0, False)],
)
def test_dimension_cap_by_tier(tier: str, dimension: int, allowed: bool) -> None:
    refusal = dimension_refusal(tier, dimension, server_max=4096)
    assert (refusal is None) == allowed


def test_dimension_refusal_names_the_tier_limit() -> None:
    refusal = dimension_refusal("free", 2048, server_max=4096)
    assert refusal is not None
    assert "free tier" in refusal and "1536" in refusal and "4096" in refusal
    # a server cap below the tier's is the one that applies, and says nothing of tiers
    assert dimension_refusal("premium", 3000, server_max=2048) == (
        "dimension must be between 1 and 2048"
    )


def test_usage_limits_report_the_effective_dimension() -> None:
    limits = usage_limits("premium", server_max_dimension=1024)
    assert limits["max_dimension"] == 1024
    assert limits["max_vectors"] == TIERS["premium"].max_vectors
    assert set(limits) == {
        "max_collections",
        "max_vectors",
        "max_dimension",
        "requests_per_second",
        "burst",
    }
