"""Model-based test: with workers killed and restarted between steps, the service
answers exactly like a dict of vectors."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.fleet import Fleet

pytestmark = pytest.mark.integration

DIM = 8
IDS = st.sampled_from([f"v{i}" for i in range(12)])


def vector_for(vid: str, version: int) -> list[float]:
    seed = int.from_bytes(f"{vid}:{version}".encode(), "little") % 2**32
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32).tolist()


def call(fleet: Fleet, client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST until the service answers 200; 503 while a tenant moves is expected."""
    deadline = time.monotonic() + 30
    while True:
        r = client.post(path, json=body)
        if r.status_code == 200:
            return dict(r.json())
        assert r.status_code in (429, 503), r.text
        assert time.monotonic() < deadline, f"no recovery in 30 s: {r.text}\n{fleet.tail()}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def model_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(Path(tmp_path_factory.mktemp("model")), workers=2).start()
    try:
        yield fleet
    finally:
        fleet.stop()


def test_service_matches_model_across_worker_kills(model_fleet: Fleet) -> None:
    fleet = model_fleet
    counter = iter(range(10_000))

    class ServiceModel(RuleBasedStateMachine):
        @initialize()
        def new_tenant(self) -> None:
            _, key = fleet.new_client(f"model{next(counter)}")
            self.client = fleet.client(key)
            r = self.client.post(
                "/v1/collections", json={"name": "m", "dimension": DIM, "metric": "l2"}
            )
            assert r.status_code == 201, r.text
            self.model: dict[str, list[float]] = {}
            self.version = 0

        @rule(vid=IDS)
        def upsert(self, vid: str) -> None:
            self.version += 1
            values = vector_for(vid, self.version)
            body = {"vectors": [{"id": vid, "values": values}]}
            assert call(fleet, self.client, "/v1/collections/m/upsert", body) == {"upserted": 1}
            self.model[vid] = values

        @rule(vid=IDS)
        def delete(self, vid: str) -> None:
            got = call(fleet, self.client, "/v1/collections/m/delete", {"ids": [vid]})
            # a retried delete may find the id already gone
            assert got["deleted"] in ((1, 0) if vid in self.model else (0,))
            self.model.pop(vid, None)

        @rule(which=st.sampled_from(["w1", "w2"]), how=st.sampled_from(["kill", "term"]))
        def restart_worker(self, which: str, how: str) -> None:
            proc = fleet.worker_procs[which]
            proc.signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
            proc.popen.wait(20)
            fleet.start_worker(which)
            fleet.wait_live(2)

        @invariant()
        def answers_equal_model(self) -> None:
            if not hasattr(self, "client"):
                return
            got = call(
                fleet, self.client, "/v1/collections/m/fetch", {"ids": [f"v{i}" for i in range(12)]}
            )
            assert set(got["vectors"]) == set(self.model)
            for vid, values in self.model.items():
                assert np.array_equal(
                    np.asarray(got["vectors"][vid]["values"], dtype=np.float32),
                    np.asarray(values, dtype=np.float32),
                )
            if self.model:
                vid, values = next(iter(self.model.items()))
                res = call(
                    fleet, self.client, "/v1/collections/m/query", {"vector": values, "top_k": 3}
                )
                assert res["matches"][0]["id"] == vid
                assert len(res["matches"]) == min(3, len(self.model))

        def teardown(self) -> None:
            if hasattr(self, "client"):
                self.client.close()

    ServiceModel.TestCase.settings = settings(
        max_examples=4,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    ServiceModel.TestCase().runTest()
