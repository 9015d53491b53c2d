"""Stateful property test: the store answers like a dict of vectors, whatever happens to it.

Random sequences of upserts (new and replaced ids), deletes by id and by filter,
compactions, graph insertion steps and reloads; after each step queries, fetches and
counts must equal those of a plain in-memory model. With at most 12 vectors and
``ef_search`` above that, HNSW visits every node, so its answers must be exact too.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from workers.collection_spec import parse_collection_spec
from workers.maintenance import Maintenance
from workers.metadata_filter import parse_filter
from workers.tenant_store import TenantStore

DIM = 4
IDS = st.sampled_from([f"id{i}" for i in range(12)])
FILTERS = st.sampled_from(
    [None, {"g": 0}, {"g": {"$ne": 1}}, {"tags": "x"}, {"$or": [{"g": 2}, {"tags": "y"}]}]
)


class StoreMachine(RuleBasedStateMachine):
    index = "flat"
    metric = "l2"

    def __init__(self) -> None:
        super().__init__()
        self.hot = Path(tempfile.mkdtemp(prefix="vp-model-"))
        self.maintenance = Maintenance(autostart=False)  # steps run only when a rule says so
        self.store = self._open()
        spec = {"collection": "c", "dimension": DIM, "metric": self.metric, "index": self.index}
        if self.index == "hnsw":
            spec["hnsw"] = {"m": 16, "ef_construction": 40}
        self.store.create_collection(parse_collection_spec(spec))
        self.model: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def _open(self) -> TenantStore:
        return TenantStore.open(
            self.hot, "t", 1 << 30, fresh_limit=1000, maintenance=self.maintenance
        )

    @property
    def coll(self):
        return self.store.collection("c")

    @rule(ids=st.lists(IDS, min_size=1, max_size=5), seed=st.integers(0, 50))
    def upsert(self, ids: list[str], seed: int) -> None:
        vectors = np.random.default_rng(seed).standard_normal((len(ids), DIM), dtype=np.float32)
        meta = [
            {"g": (seed + i) % 3, "tags": ["x"] if seed % 2 else ["y"]} for i in range(len(ids))
        ]
        assert self.coll.upsert(ids, meta, vectors) == len(ids)
        for i, vector_id in enumerate(ids):
            self.model[vector_id] = (vectors[i].copy(), meta[i])

    @rule(ids=st.lists(IDS, max_size=4))
    def delete(self, ids: list[str]) -> None:
        expected = len({i for i in ids if i in self.model})
        assert self.coll.delete(ids) == expected
        for i in ids:
            self.model.pop(i, None)

    @rule(doc=FILTERS.filter(lambda f: f is not None))
    def delete_by_filter(self, doc: dict) -> None:
        predicate = parse_filter(doc)
        gone = [i for i, (_, m) in self.model.items() if predicate(m)]
        assert self.coll.delete_where(predicate) == len(gone)
        for i in gone:
            del self.model[i]

    @rule()
    def compact(self) -> None:
        self.coll.compact()

    @rule(steps=st.integers(1, 3))
    def background_steps(self, steps: int) -> None:
        for _ in range(steps):
            self.coll.run_maintenance()

    @rule()
    def reload(self) -> None:
        self.store.close()
        self.store = self._open()

    @rule()
    def unload(self) -> None:
        self.store.unload()

    @rule(seed=st.integers(0, 1000), k=st.integers(1, 14), doc=FILTERS)
    def query(self, seed: int, k: int, doc: dict | None) -> None:
        queries = np.random.default_rng(seed).standard_normal((2, DIM), dtype=np.float32)
        predicate = parse_filter(doc) if doc is not None else None
        results, _ = self.coll.query(queries, k, True, False, predicate, ef_search=64)
        eligible = {i: v for i, (v, m) in self.model.items() if predicate is None or predicate(m)}
        for q, result in zip(queries, results, strict=True):
            truth = {i: float(((v - q) ** 2).sum()) for i, v in eligible.items()}
            best = sorted(truth.values())[:k]
            assert len(result["ids"]) == len(best)
            assert len(set(result["ids"])) == len(result["ids"])
            for vector_id, score, meta in zip(
                result["ids"], result["scores"], result["metadata"], strict=True
            ):
                assert vector_id in truth  # live, and matching the filter
                assert abs(score - truth[vector_id]) < 1e-3
                assert meta == self.model[vector_id][1]
            assert np.allclose(result["scores"], best, atol=1e-3)

    @invariant()
    def same_contents(self) -> None:
        coll = self.coll
        assert coll.vector_count == len(self.model)
        found, meta, values = coll.fetch([*sorted(self.model), "absent"])
        assert found == sorted(self.model)
        for i, vector_id in enumerate(found):
            assert values[i].tobytes() == self.model[vector_id][0].tobytes()
            assert meta[i] == self.model[vector_id][1]

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.hot, ignore_errors=True)


class HnswStoreMachine(StoreMachine):
    index = "hnsw"


_settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFlatStoreModel = StoreMachine.TestCase
TestFlatStoreModel.settings = _settings
TestHnswStoreModel = HnswStoreMachine.TestCase
TestHnswStoreModel.settings = _settings
