"""Exact (flat) nearest-neighbour search over a collection's live rows.

A long scan is cut into parts of about ``PART_FLOATS`` (rows x dimension), always the
same way for the same matrix, and the parts' answers merged. While the machine is
otherwise idle, spare cores take parts too (``ScanHelpers``; the worker's test is
workers.maintenance's ``cores_spare``): one query's scan of a large
flat collection then finishes sooner (1.6x on two cores in-process, the scan being bound
by memory bandwidth; 5.9 -> 4.4 ms over 100k x 384 through the stack). The answer does not depend
on how many threads scanned: the parts are always the same, and their answers are merged
in row order (among equal scores, the earlier part's row first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar, cast

import numpy as np

from workers.faiss_runtime import faiss, one_openmp_thread

# Measured on 100k x 128 float32, one thread: FAISS's own scan wins for a few
# queries, a single BLAS matrix product wins for larger batches (see report).
BLAS_BATCH_MIN = 8
# Floats (rows x dimension) in one part of a long scan: about half a millisecond of one
# core's scan, so spare cores stop helping soon after another read arrives, and the
# per-part call (about 15 us) is a few percent of it. Smaller scans are one part.
PART_FLOATS = 1 << 22

T = TypeVar("T")
Result = tuple[np.ndarray, np.ndarray]


def exact_search(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    helpers: ScanHelpers | None = None,
    check: Callable[[], None] | None = None,
) -> Result:
    """Top-k rows per query, best first: (scores (q, k'), rows (q, k')) with k' = min(k, n).

    ``metric`` is ``l2`` (squared distance, ascending) or an inner-product metric
    (``ip``/``cosine`` on already normalized inputs; similarity, descending). A long
    scan's parts go to ``helpers`` as well as this thread when they have spare cores;
    ``check`` (a request's budget) runs before each part, and what it raises ends the
    scan once the parts already begun are done.
    """
    n = matrix.shape[0]
    k = min(k, n)
    q = queries.shape[0]
    if k == 0 or q == 0:
        return np.zeros((q, 0), dtype=np.float32), np.zeros((q, 0), dtype=np.int64)
    starts = part_starts(n, matrix.shape[1])
    if len(starts) == 1:
        return _scan(matrix, queries, k, metric)
    ends = [*starts[1:], n]

    def part(i: int) -> Result:
        if check is not None:
            check()
        scores, rows = _scan(matrix[starts[i] : ends[i]], queries, k, metric)
        return scores, rows + starts[i]

    parts = (helpers or ALONE).run(len(starts), part)
    return merge_results(parts, k, metric)


def part_starts(rows: int, dimension: int) -> list[int]:
    """First row of each part of a scan over ``rows`` x ``dimension`` (equal parts)."""
    count = max(rows * max(dimension, 1) // PART_FLOATS, 1)
    size = -(-rows // count)
    return list(range(0, rows, size)) if rows else [0]


def merge_results(parts: list[Result], k: int, metric: str) -> Result:
    """Best ``k`` per query of several (scores, rows) results; missing slots are row -1.

    Among equal scores the earlier part's row comes first."""
    scores = np.concatenate([p[0] for p in parts], axis=1).astype(np.float32)
    rows = np.concatenate([p[1] for p in parts], axis=1).astype(np.int64)
    keys = scores.astype(np.float64) if metric == "l2" else -scores.astype(np.float64)
    keys[rows < 0] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def _scan(matrix: np.ndarray, queries: np.ndarray, k: int, metric: str) -> Result:
    k = min(k, matrix.shape[0])
    if queries.shape[0] >= BLAS_BATCH_MIN:
        return _blas_search(matrix, queries, k, metric)
    lib = faiss()
    faiss_metric = lib.METRIC_L2 if metric == "l2" else lib.METRIC_INNER_PRODUCT
    scores, rows = lib.knn(
        np.ascontiguousarray(queries, dtype=np.float32), matrix, k, metric=faiss_metric
    )
    return scores, rows


def _blas_search(matrix: np.ndarray, queries: np.ndarray, k: int, metric: str) -> Result:
    products = queries @ matrix.T
    if metric == "l2":
        base_norms = np.einsum("ij,ij->i", matrix, matrix)
        query_norms = np.einsum("ij,ij->i", queries, queries)
        keys = base_norms[None, :] - 2.0 * products
        keys += query_norms[:, None]
        np.maximum(keys, 0.0, out=keys)
    else:
        keys = -products
    n = matrix.shape[0]
    if k < n:
        part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (keys.shape[0], n))
    part_keys = np.take_along_axis(keys, part, axis=1)
    order = np.argsort(part_keys, axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    best = np.take_along_axis(part_keys, order, axis=1)
    scores = best if metric == "l2" else -best
    return scores.astype(np.float32), rows


class ScanHelpers:
    """Threads on the process's other cores that take parts of a scan while ``spare()``.

    ``spare`` is asked before each part a helper takes, so helpers stop within a part's
    time once other work arrives; the scanning thread itself takes parts until none are
    left.
    """

    def __init__(self, cores: int, spare: Callable[[], bool]) -> None:
        self.cores = max(cores, 1)
        self._spare = spare
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(self, count: int, part: Callable[[int], T]) -> list[T]:
        """``[part(0), ..., part(count - 1)]``, some computed by helpers if spare."""
        helpers = min(self.cores - 1, count - 1)
        if helpers <= 0 or not self._spare():
            return [part(i) for i in range(count)]
        parts = _Parts(count, part)
        pool = self._threads()
        for _ in range(helpers):
            pool.submit(parts.work, self._spare)
        parts.work(None)
        return parts.results()

    def _threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.cores - 1, thread_name_prefix="scan", initializer=one_openmp_thread
                )
            return self._pool


# A scan with no helpers (tests, tools, and the event loop's small scans).
ALONE = ScanHelpers(1, lambda: False)


class _Parts(Generic[T]):
    """One scan's parts, taken in order by whichever thread asks next."""

    def __init__(self, count: int, part: Callable[[int], T]) -> None:
        self._part = part
        self._count = count
        self._cond = threading.Condition()
        self._next = 0
        self._done = 0
        self._results: list[T | None] = [None] * count
        self._error: BaseException | None = None

    def _take(self) -> int | None:
        with self._cond:
            if self._next >= self._count or self._error is not None:
                return None
            self._next += 1
            return self._next - 1

    def work(self, spare: Callable[[], bool] | None) -> None:
        """Take and compute parts until none are left (or, for a helper, until not spare)."""
        while spare is None or spare():
            i = self._take()
            if i is None:
                return
            try:
                result = self._part(i)
            except BaseException as exc:  # the scanning thread raises it in results()
                with self._cond:
                    self._error = self._error or exc
                    self._done += 1
                    self._cond.notify_all()
                return
            with self._cond:
                self._results[i] = result
                self._done += 1
                self._cond.notify_all()

    def results(self) -> list[T]:
        """Every part's result, once the parts taken by helpers are done too."""
        with self._cond:
            self._cond.wait_for(lambda: self._done == self._next)
            if self._error is not None:
                raise self._error
            return cast(list[T], self._results)
