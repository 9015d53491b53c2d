"""An answer is the truth about the write (issue 22), under a crash loop.

Writers upsert continuously into a real ``vectorpanda up`` while it is hit with
at least 30 rounds of SIGKILL: most rounds kill one worker, every tenth kills the
whole service (coordinator and workers) and starts it again on the same data.
Every answer is then checked against the stored data:

- a write answered 200 is present, with its values;
- a write answered with a 4xx, or a 503 other than ``outcome_unknown`` (plain
  ``unavailable``, ``busy``), or never sent (connection refused) is absent;
- a write answered 503 ``outcome_unknown``, or with no answer at all (the
  socket closed mid-request), may be either.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.stack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DIM = 4
BATCH = 5
WRITERS = 3
ROUNDS = 30
WHOLE_SERVICE_EVERY = 10  # rounds 10, 20, 30 kill everything
# Known to be certain: nothing was written. (outcome_unknown / no answer: either.)
NOT_WRITTEN = "not_written"
WRITTEN = "written"
EITHER = "either"


@dataclass
class Target:
    """Where the service is now (it moves to a new port after a whole-service restart)."""

    url: str
    key: str
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Attempt:
    ids: list[str]
    values: np.ndarray
    verdict: str
    answer: str


def packed(data: np.ndarray) -> str:
    return base64.b64encode(data.astype("<f4").tobytes()).decode()


def verdict_of(response: httpx.Response) -> tuple[str, str]:
    if response.status_code == 200:
        return WRITTEN, "200"
    try:
        code = str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        code = "?"
    answer = f"{response.status_code} {code}"
    if response.status_code == 503 and code == "outcome_unknown":
        assert response.headers.get("Retry-After"), answer
        return EITHER, answer
    if 400 <= response.status_code < 500 or response.status_code == 503:
        return NOT_WRITTEN, answer
    return "unexpected", answer


class Writer(threading.Thread):
    def __init__(self, target: Target, name: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.target, self.name = target, name
        self.rng = np.random.default_rng(seed)
        self.attempts: list[Attempt] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        batch = 0
        while not self.stop_flag.is_set():
            values = self.rng.standard_normal((BATCH, DIM)).astype(np.float32)
            ids = [f"{self.name}-{batch}-{j}" for j in range(BATCH)]
            batch += 1
            with self.target.lock:
                url, key = self.target.url, self.target.key
            body = {"ids": ids, "values_b64": packed(values)}
            headers = {"Authorization": f"Bearer {key}"}
            try:
                r = httpx.post(
                    f"{url}/v1/collections/c/upsert", json=body, headers=headers, timeout=30
                )
                verdict, answer = verdict_of(r)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                verdict, answer = NOT_WRITTEN, "connection refused"
                time.sleep(0.05)
            except httpx.TransportError as exc:
                verdict, answer = EITHER, f"no answer ({type(exc).__name__})"
            self.attempts.append(Attempt(ids, values, verdict, answer))


def start(data_dir: Path) -> Stack:
    env = {
        "VP_RATE_LIMITS": "false",  # every refusal here must come from a crash
        # Workers killed every round would otherwise wait up to 10 s to be restarted: the
        # test is about the answers, not about how long a crash-looping worker rests.
        "VP_WORKER_RESTART_BACKOFF_MAX_S": "0.5",
    }
    return Stack(data_dir=data_dir, port=free_port(), workers=2, env=env).start()


def kill_everything(stack: Stack) -> None:
    assert stack.proc is not None
    os.killpg(stack.proc.pid, signal.SIGKILL)  # `up` leads its group: workers die with it
    stack.proc.wait()


def live_worker_pid(stack: Stack, deadline: float) -> int:
    """A connected worker's pid: the tenant's owner when it has one, so writes are in flight."""
    with stack.admin() as admin:
        while True:
            live = [w for w in admin.get("/admin/v1/workers").json()["workers"]]
            live = [w for w in live if w["state"] == "live" and w["pid"]]
            if live:
                return int(max(live, key=lambda w: w["tenants"])["pid"])
            assert time.monotonic() < deadline, "no worker came back"
            time.sleep(0.1)


def answers_since(writers: list[Writer], marks: list[int]) -> int:
    return sum(
        1 for w, m in zip(writers, marks, strict=True) for a in w.attempts[m:] if a.answer == "200"
    )


def test_every_answer_is_the_truth_about_the_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stack = start(data_dir)
    key = stack.new_client("crashloop", tier="premium")
    with stack.client(key) as api:
        r = api.post("/v1/collections", json={"name": "c", "dimension": DIM, "metric": "l2"})
        assert r.status_code == 201, r.text
    target = Target(stack.url, key)
    writers = [Writer(target, f"w{i}", seed=i) for i in range(WRITERS)]
    for w in writers:
        w.start()
    rng = random.Random(22)
    kinds: Counter[str] = Counter()
    try:
        for round_no in range(1, ROUNDS + 1):
            # Let some writes land first, so every round kills with writes in flight.
            marks = [len(w.attempts) for w in writers]
            deadline = time.monotonic() + 10
            while answers_since(writers, marks) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.2))
            if round_no % WHOLE_SERVICE_EVERY == 0:
                kill_everything(stack)
                kinds["whole service"] += 1
                stack = start(data_dir)
                with target.lock:
                    target.url = stack.url
                continue
            os.kill(live_worker_pid(stack, deadline=time.monotonic() + 20), signal.SIGKILL)
            kinds["worker"] += 1
    finally:
        for w in writers:
            w.stop_flag.set()
        for w in writers:
            w.join(60)

    attempts = [a for w in writers for a in w.attempts]
    answers = Counter(a.answer for a in attempts)
    print(f"\nrounds: {dict(kinds)}; answers: {dict(answers)}")
    try:
        assert kinds["worker"] + kinds["whole service"] >= ROUNDS
        assert kinds["whole service"] >= ROUNDS // WHOLE_SERVICE_EVERY
        assert answers["200"] >= 50, answers
        stored = fetch_all(stack, key, [i for a in attempts for i in a.ids])
        wrong = [
            f"unexpected answer {a.answer}: {a.ids[0]}"
            for a in attempts
            if a.verdict == "unexpected"
        ]
        for a in attempts:
            present = [i in stored for i in a.ids]
            if a.verdict == WRITTEN:
                if not all(present):
                    wrong.append(f"answered 200 but missing: {a.ids[0]}")
                    continue
                got = np.array([stored[i] for i in a.ids], dtype=np.float32)
                if not np.allclose(got, a.values):
                    wrong.append(f"answered 200 but other values: {a.ids[0]}")
            elif a.verdict == NOT_WRITTEN and any(present):
                wrong.append(f"answered {a.answer} but stored: {a.ids[0]}")
            elif a.verdict == EITHER and any(present) != all(present):
                wrong.append(f"half written ({a.answer}): {a.ids[0]}")
        assert not wrong, wrong[:20]
    finally:
        stack.stop()


def fetch_all(stack: Stack, key: str, ids: list[str]) -> dict[str, list[float]]:
    """Every stored vector among ``ids`` (waiting for the service to serve again)."""
    out: dict[str, list[float]] = {}
    with stack.client(key) as api:
        for start_at in range(0, len(ids), 1000):
            chunk = ids[start_at : start_at + 1000]
            deadline = time.monotonic() + 60
            while True:
                r = api.post("/v1/collections/c/fetch", json={"ids": chunk})
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text
            for vid, found in r.json()["vectors"].items():
                out[vid] = found["values"]
    return out
