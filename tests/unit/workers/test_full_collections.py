"""A worker collects its oldest generation itself (workers/full_collections.py): while
it serves no reads, at most every MIN_INTERVAL_S, and at least every MAX_INTERVAL_S;
the young generations stay automatic, and Python's thresholds come back afterwards."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from workers import full_collections
from workers.full_collections import (
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    NO_AUTOMATIC_FULL,
    QUIET_S,
    FullCollections,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_collection_waits_for_a_quiet_moment_or_the_longest_interval() -> None:
    clock, quiet, runs = Clock(), [False], []
    asked: list[float] = []

    def is_quiet(for_s: float) -> bool:
        asked.append(for_s)
        return quiet[0]

    full = FullCollections(is_quiet, clock, lambda: runs.append(clock.now))
    quiet[0] = True
    clock.now += MIN_INTERVAL_S - 1
    assert not full.tick()  # quiet, but the last one is too recent
    clock.now += 1
    assert full.tick() and runs == [clock.now]
    assert asked[-1] == QUIET_S
    quiet[0] = False
    clock.now += MAX_INTERVAL_S - 1
    assert not full.tick()  # reads keep coming: it waits...
    clock.now += 1
    assert full.tick()  # ...but not past the longest interval
    assert len(runs) == 2


def test_an_old_reference_cycle_waits_for_the_full_collection() -> None:
    class Node:
        pass

    before = gc.get_threshold()
    clock = Clock()
    full = FullCollections(lambda _s: True, clock)
    try:
        full_collections.young_collections_only()
        node = Node()
        node.self = node  # type: ignore[attr-defined]  # a cycle: only a collection frees it
        gone = weakref.ref(node)
        gc.collect(1)  # it survives the young collections: now in the oldest generation
        del node
        for _ in range(3):
            gc.collect(1)  # what automatic collections do now: young generations only
        assert gone() is not None
        clock.now += MIN_INTERVAL_S
        assert full.tick()  # quiet and due: the oldest generation is collected
        assert gone() is None
    finally:
        gc.set_threshold(*before)


async def test_while_it_runs_python_never_collects_the_oldest_generation_itself() -> None:
    before = gc.get_threshold()
    stop = asyncio.Event()
    task = asyncio.create_task(FullCollections(lambda _s: False).run(stop))
    await asyncio.sleep(0.05)
    assert gc.get_threshold() == (before[0], before[1], NO_AUTOMATIC_FULL)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert gc.get_threshold() == before  # put back when the worker stops
    task = asyncio.create_task(FullCollections(lambda _s: False).run(asyncio.Event()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gc.get_threshold() == before  # and when its task is cancelled
