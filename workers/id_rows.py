"""id -> row over a table's own id list, in one int32 array instead of a dict.

A dict of 100,000 str -> int holds about 6.7 MiB (its entries, and an int object per
row); this holds 1 MiB: an open-addressing hash table (linear probing, at most half
full) whose slots are row numbers, the key of a slot being ``ids[row]`` in the
table's list. A str caches its hash, so a probe costs a few array reads and one
string comparison. Deletion shifts the rest of a probe run back (no tombstones).

The caller keeps ``ids`` and this in step: ``add`` after appending an id, ``pop``
while the id is still at its row, ``relocate`` before overwriting a moved id's row.
"""

from __future__ import annotations

import sys
from array import array

_EMPTY = -1
_MIN_SLOTS = 8


class IdRows:
    """Which row of ``ids`` holds each id."""

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids
        self._slots = array("i", [_EMPTY]) * _MIN_SLOTS
        self._mask = _MIN_SLOTS - 1
        self._size = 0
        self.rebuild(ids)

    def __len__(self) -> int:
        return self._size

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + sys.getsizeof(self._slots)

    def get(self, vector_id: str) -> int | None:
        """The row of ``vector_id``, or None."""
        row = self.row_or(vector_id, _EMPTY)
        return None if row == _EMPTY else row

    def row_or(self, vector_id: str, default: int) -> int:
        """The row of ``vector_id``, or ``default``."""
        slots, ids, mask = self._slots, self._ids, self._mask
        i = hash(vector_id) & mask
        while True:
            row = slots[i]
            if row == _EMPTY:
                return default
            if ids[row] == vector_id:
                return row
            i = (i + 1) & mask

    def add(self, vector_id: str, row: int) -> None:
        """Note a new id (absent so far) that is now ``ids[row]``."""
        self._size += 1
        if 2 * self._size > len(self._slots):
            self.rebuild(self._ids, expected=self._size)  # ids already holds it
            return
        self._place(hash(vector_id), row)

    def pop(self, vector_id: str) -> int | None:
        """Forget ``vector_id`` (still at its row in ``ids``); its row, or None."""
        slots, ids, mask = self._slots, self._ids, self._mask
        i = hash(vector_id) & mask
        while True:
            row = slots[i]
            if row == _EMPTY:
                return None
            if ids[row] == vector_id:
                break
            i = (i + 1) & mask
        # Shift later entries of the run back into the hole when their home allows.
        j = i
        while True:
            j = (j + 1) & mask
            other = slots[j]
            if other == _EMPTY:
                break
            home = hash(ids[other]) & mask
            stays = (i < home <= j) if i <= j else (home > i or home <= j)
            if not stays:
                slots[i] = other
                i = j
        slots[i] = _EMPTY
        self._size -= 1
        return row

    def relocate(self, vector_id: str, old_row: int, new_row: int) -> None:
        """``vector_id`` moves from ``old_row`` to ``new_row`` (``ids`` not yet changed)."""
        slots, mask = self._slots, self._mask
        i = hash(vector_id) & mask
        while slots[i] != old_row:
            i = (i + 1) & mask
        slots[i] = new_row

    def rebuild(self, ids: list[str], expected: int | None = None) -> None:
        """Index ``ids`` (distinct) afresh, sized for their count (or ``expected``)."""
        self._ids = ids
        size = len(ids) if expected is None else expected
        slots = _MIN_SLOTS
        while slots <= 2 * size:  # at most half full
            slots *= 2
        self._slots = array("i", [_EMPTY]) * slots
        self._mask = slots - 1
        self._size = len(ids)
        for row, vector_id in enumerate(ids):
            self._place(hash(vector_id), row)

    def fit(self) -> None:
        """Give back slots after many removals (under an eighth full)."""
        if len(self._slots) > _MIN_SLOTS and 8 * self._size < len(self._slots):
            self.rebuild(self._ids)

    def _place(self, hashed: int, row: int) -> None:
        slots, mask = self._slots, self._mask
        i = hashed & mask
        while slots[i] != _EMPTY:
            i = (i + 1) & mask
        slots[i] = row
