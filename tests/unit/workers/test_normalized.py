"""Cosine's unit-length copies: the same bits as ``np.linalg.norm`` gives.

The query path computes them with fewer numpy calls than the plain formula; stored
vectors and queries must still be normalized exactly as before, zero and NaN rows
left zero.
"""

from __future__ import annotations

import numpy as np
import pytest

from workers.vector_table import normalized


def reference(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    out = np.zeros(vectors.shape, dtype=np.float32)
    np.divide(vectors, norms, out=out, where=norms > 0, casting="unsafe")
    return out


@pytest.mark.parametrize("shape", [(1, 384), (7, 16), (64, 1536), (3, 3), (0, 5), (2, 0)])
@pytest.mark.parametrize("scale", [1e-30, 1e-3, 1.0, 1e20, 1e30])
def test_unit_rows_have_the_bits_of_the_plain_formula(shape: tuple[int, int], scale: float) -> None:
    vectors = (np.random.default_rng(3).standard_normal(shape) * scale).astype(np.float32)
    got = normalized(vectors)
    assert got.dtype == np.float32 and got.shape == vectors.shape and got.flags.c_contiguous
    assert got.tobytes() == reference(vectors).tobytes()


def test_zero_and_nan_rows_stay_zero_and_the_others_are_untouched() -> None:
    vectors = np.random.default_rng(4).standard_normal((4, 8)).astype(np.float32)
    vectors[1] = 0
    vectors[2, 3] = np.nan
    got = normalized(vectors)
    assert not got[1].any() and not got[2].any()
    assert got.tobytes() == reference(vectors).tobytes()
    assert np.allclose(np.linalg.norm(got[[0, 3]], axis=1), 1.0)
