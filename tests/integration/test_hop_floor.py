"""benchmarks.hop_floor: the bare relay answers an HTTP request through its second process."""

from __future__ import annotations

import httpx
import pytest

from benchmarks.hop_floor import ANSWER_BYTES, running_floor

pytestmark = pytest.mark.integration


def test_the_relay_answers_each_request_through_the_echo_process() -> None:
    with running_floor() as (url, relay, echo):
        assert relay != echo
        with httpx.Client(base_url=url, timeout=10) as http:
            for size in (0, 1_600, 300_000):  # empty, a 384-d query, a frame of many
                answer = http.post("/v1/collections/h/query", content=b"q" * size)
                assert answer.status_code == 200
                assert answer.headers["content-type"] == "application/x-vectorpanda"
                assert answer.content == b"a" * ANSWER_BYTES
    with pytest.raises(httpx.ConnectError):  # both stopped on leaving
        httpx.post(f"{url}/v1/collections/h/query", content=b"q", timeout=2)
