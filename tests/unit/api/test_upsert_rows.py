"""The request matrix checks of api/upsert_rows.py: the same verdicts as the plain
numpy formulas, on the binary query's float32 matrix and on JSON's lists alike."""

from __future__ import annotations

import numpy as np
import pytest

from api.upsert_rows import INVALID, RowsRefused, all_finite, finite_rows, matrix_of

SAME_WIDTH = "all vectors must have the same, non-zero number of values"
NOT_FINITE = "values must be finite (no NaN or Infinity, and within float32 range)"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("shape", [(1, 384), (5, 3), (1, 1)])
def test_all_finite_says_what_isfinite_says(bad: float, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    big = np.float32(3.4e38)  # float32's largest: the float64 sum cannot overflow
    matrix = np.full(shape, big, dtype=np.float32)
    assert all_finite(matrix) and np.isfinite(matrix).all()
    matrix = (rng.standard_normal(shape) * 1e30).astype(np.float32)
    assert all_finite(matrix)
    matrix[rng.integers(shape[0]), rng.integers(shape[1])] = bad
    assert not all_finite(matrix) and not np.isfinite(matrix).all()
    assert all_finite(np.empty((0, 4), dtype=np.float32))


def test_a_float32_matrix_is_taken_as_it_is() -> None:
    matrix = np.frombuffer(np.arange(12, dtype="<f4").tobytes(), dtype="<f4").reshape(3, 4)
    assert matrix_of(matrix) is matrix


@pytest.mark.parametrize(
    "rows",
    [
        np.empty((0, 4), dtype=np.float32),
        np.empty((2, 0), dtype=np.float32),
        [],
        [[]],
        [[1.0, 2.0], [3.0]],
    ],
)
def test_empty_or_ragged_rows_are_refused(rows: object) -> None:
    with pytest.raises(RowsRefused) as refused:
        matrix_of(rows)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.message) == (INVALID, SAME_WIDTH)


@pytest.mark.parametrize(
    "rows",
    [
        np.array([[1.0, np.nan]], dtype=np.float32),
        np.array([[np.inf, 1.0], [0.0, 0.0]], dtype=np.float32),
        [[1.0, 2.0], [1e39, 0.0]],  # beyond float32: infinite once converted
        [[float("nan"), 0.0]],
    ],
)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_values_that_are_not_finite_are_refused(rows: object) -> None:
    with pytest.raises(RowsRefused) as refused:
        matrix_of(rows)  # type: ignore[arg-type]
    assert (refused.value.status, refused.value.message) == (INVALID, NOT_FINITE)


def test_lists_and_other_dtypes_become_float32() -> None:
    assert matrix_of([[1, 2], [3, 4]]).tobytes() == np.array([[1, 2], [3, 4]], "f4").tobytes()
    wide = np.array([[0.1, 0.2]], dtype=np.float64)
    got = matrix_of(wide)
    assert got.dtype == np.float32 and got.tobytes() == wide.astype(np.float32).tobytes()


def test_finite_rows_refuses_a_nan_of_a_packed_upsert() -> None:
    good = np.ones((2, 3), dtype="<f4")
    assert finite_rows(good).dtype == np.float32
    good[1, 2] = np.nan
    with pytest.raises(RowsRefused, match="finite"):
        finite_rows(good)
