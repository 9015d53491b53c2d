"""Long Python work in a request thread hands the interpreter lock to the event loop
between its steps (workers/gil_turns.py): a large filter's pieces and sets, and a scan
of many rows' metadata. Answers are the same with or without the pauses."""

from __future__ import annotations

import pytest

from coordinator.filter_pieces import piece_arrays, split_filter
from workers import gil_turns
from workers.filter_pieces import KEY, join_filter
from workers.metadata_filter import SET_CHUNK, compile_filter, matching_rows
from workers.protocol import decode_frame, encode_frame
from workers.work_budget import WorkBudget

STRINGS = [f"x{i:06d}" for i in range(10 * SET_CHUNK)]
FILTER = {"color": {"$nin": STRINGS}}


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every step pauses (a turn of zero); the pauses are counted, not slept."""
    counted: list[int] = []
    monkeypatch.setattr(gil_turns, "TURN_S", 0.0)
    monkeypatch.setattr(gil_turns, "_pause", lambda: counted.append(1))
    return counted


def test_a_large_filter_pauses_between_pieces_and_between_set_chunks(pauses: list[int]) -> None:
    split, lists = split_filter(FILTER)
    places, arrays = piece_arrays(lists)
    frame = decode_frame(encode_frame({"filter": split, KEY: places}, arrays))
    joined = join_filter(frame.header["filter"], frame.header[KEY], frame.arrays)
    assert joined == FILTER
    assert len(pauses) == len(arrays)  # one per piece
    pauses.clear()
    predicate, operands = compile_filter(joined)
    assert operands == len(STRINGS)
    assert len(pauses) == 10  # one per chunk of SET_CHUNK operands
    assert predicate({"color": "x000001"}) is False
    assert predicate({"color": "y"}) is True


def test_a_long_scan_pauses_between_chunks_and_matches_the_same_rows(pauses: list[int]) -> None:
    metadata = [{"n": i} for i in range(20_000)]
    predicate, _ = compile_filter({"n": {"$gte": 19_990}})
    mask = matching_rows(predicate, metadata, WorkBudget())
    assert mask.nonzero()[0].tolist() == list(range(19_990, 20_000))
    assert len(pauses) >= 5  # chunks grow to at most 4,096 rows: several chunks, a pause each


def test_a_pause_sleeps_briefly_and_only_after_a_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(gil_turns.time, "sleep", slept.append)
    clock = iter([0.0, 0.0001, 0.0006, 0.0006, 0.0007])
    monkeypatch.setattr(gil_turns.time, "perf_counter", lambda: next(clock))
    turns = gil_turns.Turns()  # starts at 0.0
    turns.step()  # 0.1 ms into its turn: no pause
    assert slept == []
    turns.step()  # 0.6 ms: a pause, and the turn starts again (at 0.6 ms)
    assert slept == [gil_turns.PAUSE_S]
    turns.step()  # 0.1 ms into the new turn: no pause
    assert slept == [gil_turns.PAUSE_S]
