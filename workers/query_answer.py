"""A query's answer rendered in the worker, as the exact JSON body the API sends the client.

The coordinator then forwards the bytes as they are: no decoding of the results into
Python objects and no re-encoding (issue 11). The rendering is the one the API used
to do itself (``api/routes/vectors.py``), so the bytes are the same: scores as the
float32 values widened to doubles, values as float32 arrays, missing metadata as ``{}``.

QUERY ``render``: ``"single"`` answers ``{"matches": [...]}`` (one query vector), and
``"batch"`` answers ``{"results": [{"matches": [...]}, ...]}``; the reply then carries
``rendered: true`` and the body as the uint8 array ``body``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

RENDER_FORMS = frozenset({"single", "batch"})


def render_answer(
    results: list[dict[str, Any]], values: np.ndarray | None, form: str
) -> np.ndarray:
    """The client's JSON body for ``results`` (from Collection.query), as a uint8 array."""
    answers: list[list[dict[str, Any]]] = []
    row = 0
    for result in results:
        metas = result.get("metadata")
        matches = []
        for i, (vid, score) in enumerate(zip(result["ids"], result["scores"], strict=True)):
            item: dict[str, Any] = {"id": vid, "score": score}
            if metas is not None:
                item["metadata"] = metas[i] or {}
            if values is not None:
                item["values"] = values[row]
            row += 1
            matches.append(item)
        answers.append(matches)
    if form == "single":
        body = {"matches": answers[0]}
    else:
        body = {"results": [{"matches": m} for m in answers]}
    return np.frombuffer(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), dtype=np.uint8)
