"""An unknown key id and a known key id with a wrong secret are refused in the same time.

Measured in process, on the data plane's key check over a real control database
file (HTTP would only add noise): 2,000 attempts of each kind, interleaved, each
a fresh string (so every one goes to the database, as a prober's would), compared
by median. The medians must be within 5 %. On a busy machine one measurement can
be disturbed, so it is taken up to three times; a real difference shows in all.
The HTTP bodies are compared in test_key_security.py.
"""

from __future__ import annotations

import secrets
import statistics
import time
from pathlib import Path

import pytest

from coordinator.accounts import Accounts, CreateClient, IssueApiKey, RevokeApiKey

pytestmark = pytest.mark.integration

PEPPER = b"timing-pepper-0123456789abcdef"
ATTEMPTS = 2000
TOLERANCE = 0.05


def fresh_secret() -> str:
    return secrets.token_urlsafe(32)


async def medians(accounts: Accounts, known_key_id: str) -> tuple[float, float]:
    unknown: list[int] = []
    wrong: list[int] = []
    for i in range(ATTEMPTS):
        attempts = [
            (f"vp_{secrets.token_hex(8)}_{fresh_secret()}", unknown),
            (f"vp_{known_key_id}_{fresh_secret()}", wrong),
        ]
        if i % 2:
            attempts.reverse()  # neither kind always goes first
        for presented, times in attempts:
            start = time.perf_counter_ns()
            refused = await accounts.authenticate(presented)
            times.append(time.perf_counter_ns() - start)
            assert refused is None
    return statistics.median(unknown), statistics.median(wrong)


async def test_unknown_key_id_and_wrong_secret_take_the_same_time(tmp_path: Path) -> None:
    accounts = Accounts(tmp_path / "control.sqlite3", PEPPER, cache_size=10_000)
    try:
        client = await accounts.handle(CreateClient("Acme", "ops@acme.io", "free"))
        keys = [await accounts.handle(IssueApiKey(client.client_id, ("read",))) for _ in range(50)]
        await accounts.handle(RevokeApiKey(client.client_id, keys[1].key_id))
        known = keys[0].key_id
        assert await accounts.authenticate(keys[0].api_key) is not None  # it is a real key
        await medians(accounts, known)  # warm-up: caches, statement compilation
        results = []
        for _ in range(3):
            unknown_ns, wrong_ns = await medians(accounts, known)
            gap = abs(unknown_ns - wrong_ns) / min(unknown_ns, wrong_ns)
            results.append((unknown_ns, wrong_ns, gap))
            if gap <= TOLERANCE:
                break
        print(f"key refusal medians, ns (unknown id, wrong secret, gap): {results}")
        assert results[-1][2] <= TOLERANCE, (
            "median ns (unknown id, wrong secret, relative gap) per try: " + repr(results)
        )
    finally:
        await accounts.close()
