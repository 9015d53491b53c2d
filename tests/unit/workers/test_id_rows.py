"""id -> row in one int array answers exactly what a dict would, through swap-removes."""

from __future__ import annotations

import random
import sys

from workers.id_rows import IdRows


def _model_run(seed: int, steps: int, universe: int) -> None:
    rng = random.Random(seed)
    ids: list[str] = []
    rows = IdRows(ids)
    model: dict[str, int] = {}
    for _ in range(steps):
        key = f"k{rng.randrange(universe)}"
        if key not in model and rng.random() < 0.55:
            ids.append(key)
            rows.add(key, len(ids) - 1)
            model[key] = len(ids) - 1
        elif model:
            victim = key if key in model else rng.choice(ids)
            row = rows.pop(victim)
            assert row == model.pop(victim)
            last = len(ids) - 1
            if row != last:  # the table's swap-remove
                moved = ids[last]
                rows.relocate(moved, last, row)
                ids[row] = moved
                model[moved] = row
            ids.pop()
            if rng.random() < 0.05:
                rows.fit()
        assert len(rows) == len(model)
        probe = f"k{rng.randrange(universe * 2)}"  # half of these were never added
        assert rows.get(probe) == model.get(probe)
        assert rows.row_or(probe, -1) == model.get(probe, -1)
    assert {i: rows.get(i) for i in ids} == model
    assert rows.pop("never") is None


def test_random_adds_pops_and_moves_match_a_dict() -> None:
    for seed in range(20):
        _model_run(seed, steps=3000, universe=300)  # small tables: runs wrap around


def test_a_rebuilt_map_finds_every_id_and_a_drained_one_is_small() -> None:
    ids = [str(i) for i in range(50_000)]
    rows = IdRows(ids)
    assert all(rows.get(i) == n for n, i in enumerate(ids))
    peak = sys.getsizeof(rows)
    assert peak < 50_000 * 24  # an int32 slot array, at most half full
    for i in reversed(ids[1:]):
        assert rows.pop(i) == len(ids) - 1
        ids.pop()
    rows.fit()
    assert rows.get("0") == 0 and rows.get("1") is None
    assert sys.getsizeof(rows) * 100 < peak
