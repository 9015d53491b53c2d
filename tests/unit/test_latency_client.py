"""The latency clients' own collector is paused while they time requests, then restored."""

from __future__ import annotations

import gc

from tests.flood import gc_paused


def test_collection_is_paused_inside_and_restored_after() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # the heap so far is out of every collection
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_restored_when_the_body_raises() -> None:
    gc.enable()
    try:
        with gc_paused():
            raise RuntimeError("a failed request")
    except RuntimeError:
        pass
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
