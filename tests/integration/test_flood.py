"""A free-tier client floods with 64 connections; two other clients must not notice.

Through ``vectorpanda up`` (the coordinator's own admission gate). The steady
clients' p99 during the flood stays within 2x their p99 alone, measured in the
same test, and they get no error (``tests.flood.within_2x_in_rounds``: a round
whose p99 misses on the shared machine gets another, up to 3; errors never).
"""

from __future__ import annotations

import pytest

from tests.flood import (
    Round,
    flood_requests,
    flood_round,
    prepare_collection,
    require_wrk,
    run_steady,
    within_2x_in_rounds,
)
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.integration

FLOOD_S = 12
UNKNOWN_KEY = "vp_0123456789abcdef_" + "x" * 43


@pytest.fixture(scope="module", params=["1", "2"], ids=["1-process", "2-processes"])
def flood_stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """``vectorpanda up`` with one coordinator process, and with two sharing the port."""
    data = tmp_path_factory.mktemp("vp-flood")
    with running_stack(data, VP_COORDINATOR_PROCESSES=request.param) as stack:
        yield stack


def client_for(stack: Stack, name: str, tier: str):
    client = stack.client(stack.new_client(name, tier=tier))
    prepare_collection(client)
    return client


def test_a_free_tier_flood_does_not_slow_other_clients(flood_stack: Stack, tmp_path) -> None:
    require_wrk()
    stack = flood_stack
    steady = {
        "standard": client_for(stack, "steady-standard", "standard"),
        "premium": client_for(stack, "steady-premium", "premium"),
    }
    flood_key = stack.new_client("flooder", tier="free")
    prepare_collection(stack.client(flood_key))
    run_steady(steady, 2)  # warm up connections and tenants

    def measure() -> Round:
        alone, during, out = flood_round(
            steady, stack.url, flood_key,
            alone_s=6, flood_s=FLOOD_S, during_s=FLOOD_S - 2, workdir=tmp_path,
        )  # fmt: skip
        assert flood_requests(out) > 1000, f"the flood hardly flooded:\n{out}"
        return alone, during, out

    within_2x_in_rounds(measure)
    for client in steady.values():
        client.close()


def test_a_flood_with_an_unknown_key_is_refused_and_harmless(flood_stack: Stack, tmp_path) -> None:
    require_wrk()
    stack = flood_stack
    steady = {"standard": client_for(stack, "steady-unknown", "standard")}

    def measure() -> Round:
        alone, during, out = flood_round(
            steady, stack.url, UNKNOWN_KEY, alone_s=4, flood_s=8, during_s=6, workdir=tmp_path
        )
        assert "Non-2xx or 3xx responses" in out, out
        return alone, during, out

    within_2x_in_rounds(measure)
