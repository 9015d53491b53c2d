"""The size of a metadata filter, checked at the edge before it reaches a worker.

Only the shape that bounds the work is checked here: how deeply ``$and`` / ``$or``
nest (``VP_MAX_FILTER_DEPTH``) and how many operands the filter compares against
(``VP_MAX_FILTER_OPERANDS``: each element of an ``$in`` / ``$nin`` list and each
entry of an ``$and`` / ``$or`` list counts one). The worker checks the grammar
(operators, operand kinds) and answers a bad one with its own 422. A filter past
a bound never leaves the coordinator, so no worker spends time on it and no
frame has to carry it.
"""

from __future__ import annotations

from typing import Any

from api.errors import Invalid
from api.query_parse import CheckedFilter, FilterTooLarge, size_filter
from coordinator.dataplane import Limits


def check_filter_bounds(doc: dict[str, Any] | CheckedFilter | None, limits: Limits) -> None:
    """Refuse (422) a filter nested or sized past the configured limits."""
    if isinstance(doc, CheckedFilter):
        if doc.error is not None:
            raise Invalid(doc.error)
    elif doc is not None:
        try:
            size_filter(doc, limits.max_filter_depth, limits.max_filter_operands)
        except FilterTooLarge as exc:
            raise Invalid(str(exc)) from None
