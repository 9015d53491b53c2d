"""A query's answer rendered in the worker, as the exact JSON body the API sends the client.

The coordinator then forwards the bytes as they are: no decoding of the results into
Python objects and no re-encoding (issue 11). The rendering is the one the API used
to do itself (``api/routes/vectors.py``), so the bytes are the same: scores as the
float32 values widened to doubles, values as float32 arrays, missing metadata as ``{}``.

QUERY ``render``: ``"single"`` answers ``{"matches": [...]}`` (one query vector), and
``"batch"`` answers ``{"results": [{"matches": [...]}, ...]}``; the reply then carries
``rendered: true`` and the body as the uint8 array ``body``.

QUERY ``render_format: "binary"`` (with ``render``) asks for the binary answer
instead (``render_binary``); the reply then also carries ``format: "binary"``. A
worker from before it ignores the field and renders JSON (the coordinator converts).

The binary answer (``application/x-vectorpanda``, negotiated by ``Accept``)::

    b"VPA1" | u32 LE length of H | H (JSON) | float32 LE scores | float32 LE values

H is ``{"single": bool, "results": [{"ids": [...], "metadata"?: [...]}, ...]}`` plus
``"dimension": d`` when values are included. The scores of every match follow H,
result after result (the float32 values the JSON answer widens to doubles); then,
when asked, each match's values, row after row. Metadata is as in the JSON answer
(``{}`` for none).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

RENDER_FORMS = frozenset({"single", "batch"})
BINARY_MAGIC = b"VPA1"
_LEN = struct.Struct("<I")


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


def render_binary(
    results: list[dict[str, Any]], values: np.ndarray | None, form: str
) -> np.ndarray:
    """The client's binary body for ``results`` (see the module's description), as uint8."""
    head: dict[str, Any] = {"single": form == "single"}
    described = []
    scores: list[float] = []
    for result in results:
        item: dict[str, Any] = {"ids": result["ids"]}
        metas = result.get("metadata")
        if metas is not None:
            item["metadata"] = [m or {} for m in metas]
        described.append(item)
        scores.extend(result["scores"])
    head["results"] = described[:1] if form == "single" else described
    if form == "single":
        scores = scores[: len(described[0]["ids"])] if described else []
    parts = [np.asarray(scores, dtype="<f4").tobytes()]
    if values is not None:
        head["dimension"] = int(values.shape[1])
        kept = values[: len(scores)] if form == "single" else values
        parts.append(np.ascontiguousarray(kept, dtype="<f4").tobytes())
    encoded = orjson.dumps(head)
    body = b"".join([BINARY_MAGIC, _LEN.pack(len(encoded)), encoded, *parts])
    return np.frombuffer(body, dtype=np.uint8)


def rendered_reply(
    results: list[dict[str, Any]], values: np.ndarray | None, form: str, binary: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The QUERY reply carrying the rendered answer (JSON, or binary when asked)."""
    if binary:
        return {"rendered": True, "format": "binary"}, {
            "body": render_binary(results, values, form)
        }
    return {"rendered": True}, {"body": render_answer(results, values, form)}


def render_format(value: Any) -> bool:
    """Whether QUERY's ``render_format`` asks for the binary answer; ValueError if malformed."""
    if value is None or value == "json":
        return False
    if value == "binary":
        return True
    raise ValueError("render_format must be 'json', 'binary' or null")


def binary_from_json(body: bytes, include_metadata: bool, include_values: bool) -> bytes:
    """The binary answer of a JSON one (a worker from before binary rendering)."""
    doc = orjson.loads(body)
    single = "matches" in doc
    answers = [doc["matches"]] if single else [r["matches"] for r in doc["results"]]
    results: list[dict[str, Any]] = []
    rows: list[Any] = []
    dimension = 0
    for matches in answers:
        result: dict[str, Any] = {
            "ids": [m["id"] for m in matches],
            "scores": [m["score"] for m in matches],
        }
        if include_metadata:
            result["metadata"] = [m.get("metadata") for m in matches]
        results.append(result)
        for m in matches:
            if include_values:
                rows.append(m["values"])
                dimension = len(m["values"])
    values = np.asarray(rows, dtype="<f4").reshape(-1, dimension) if include_values else None
    return render_binary(results, values, "single" if single else "batch").tobytes()
