"""benchmarks.level_draws: only the levels differ between the graphs it compares."""

from __future__ import annotations

import faiss
import numpy as np

from benchmarks.data import gaussian_mixture
from benchmarks.level_draws import EFS, build_and_recall
from workers.hnsw_index import draw_levels, level_cdf


def test_the_same_levels_build_the_same_graph_and_others_may_not() -> None:
    data = gaussian_mixture(1500, 16, 50, clusters=30)
    cdf = level_cdf(faiss.IndexHNSWFlat(16, 16))
    levels = draw_levels(cdf, np.random.default_rng(1), 1500)
    first, _ = build_and_recall(data, levels)
    again, _ = build_and_recall(data, levels)
    assert first == again  # FAISS 1.15 builds deterministically: the levels decide
    recalls = [float(r) for r in first.split(" / ")]
    assert len(recalls) == len(EFS) and all(0.5 < r <= 1.0 for r in recalls)
    own, _ = build_and_recall(data, None)
    assert len(own.split(" / ")) == len(EFS)
