"""A fixed set of query requests and the exact answers the query route gave before the lean path.

``python -m tests.integration.query_golden`` starts a stack, replays the cases and writes
``fixtures/query_golden.json``; it was run on main before the query path was rewritten,
so the test that replays it (test_query_golden.py) proves the lean path answers byte for
byte as the old one did, errors included. Every request carries a fixed ``X-Request-Id``,
so even error bodies are deterministic.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.timing import wait_until_idle
from tests.stack import Stack, running_stack

FIXTURE = Path(__file__).parent / "fixtures" / "query_golden.json"
DIM = 8
COUNT = 60

_rng = np.random.default_rng(20261129)
DATA = _rng.standard_normal((COUNT, DIM)).astype(np.float32)
Q = _rng.standard_normal((4, DIM)).astype(np.float32)
COLORS = ("red", "green", "blue")


def _metadata(i: int) -> dict[str, Any] | None:
    if i % 7 == 3:
        return None  # stored without metadata: answered as {}
    return {"color": COLORS[i % 3], "n": i, "tags": [f"t{i % 4}"], "w": i / 8}


def _q(i: int) -> list[float]:
    return [float(x) for x in Q[i]]


def setup(stack: Stack) -> dict[str, str]:
    """Three clients' keys: ``full`` (with its collections loaded), ``write`` only, and none."""
    full = stack.new_client("golden", tier="premium")
    write_only = stack.new_client("golden-w", scopes=("write",), tier="premium")
    with stack.client(full) as c:
        collections = (("flat", "l2", "flat"), ("cos", "cosine", "flat"), ("hn", "ip", "hnsw"))
        for name, metric, index in collections:
            body = {"name": name, "dimension": DIM, "metric": metric, "index": index}
            c.post("/v1/collections", json=body).raise_for_status()
            vectors = [
                {"id": f"v{i}", "values": DATA[i].tolist(), "metadata": _metadata(i)}
                for i in range(COUNT)
            ]
            for v in vectors:
                if v["metadata"] is None:
                    del v["metadata"]
            c.post(f"/v1/collections/{name}/upsert", json={"vectors": vectors}).raise_for_status()
    wait_until_idle(stack.worker_pids(), budget_s=60, window_s=1.0)
    return {"full": full, "write": write_only}


J = "application/json"


def cases() -> list[dict[str, Any]]:
    """Each case: key (full|write|none|bad), path suffix, content-type, body (json or raw)."""
    out: list[dict[str, Any]] = []

    def add(body: Any, name: str = "flat", **kw: Any) -> None:
        case = {"key": "full", "name": name, "query": "", "ctype": J, "method": "POST"}
        case.update(kw)
        if "raw" not in case:
            case["raw"] = json.dumps(body)
        out.append(case)

    # answers
    add({"vector": _q(0), "top_k": 5})
    add({"vector": _q(0), "top_k": 5, "include_metadata": True})
    add({"vector": _q(1), "top_k": 3, "include_values": True})
    add({"vector": _q(1), "top_k": 4, "include_values": True, "include_metadata": True})
    add({"vectors": [_q(0), _q(1), _q(2)], "top_k": 3, "include_metadata": True})
    add({"vectors": [_q(3)], "top_k": 2, "include_values": True})
    add({"vector": _q(2), "top_k": 10, "filter": {"color": "red"}, "include_metadata": True})
    add({"vector": _q(2), "filter": {"n": {"$in": [1, 2, 3, 4, 5, 44]}}, "include_metadata": True})
    add({"vector": _q(2), "top_k": 3, "filter": {}})
    add({"vector": _q(2), "top_k": 3, "filter": {"color": "purple"}})
    add({"vector": _q(3), "top_k": 100})
    add({"vector": [1, 2, 3, 4, 5, 6, 7, 8], "top_k": 2})
    add({"vector": _q(0), "top_k": 5, "include_metadata": True}, name="cos")
    add({"vector": _q(0), "top_k": 5, "include_metadata": True, "ef_search": 50}, name="hn")
    add({"vector": _q(1), "top_k": 5, "include_values": True}, name="hn")
    add({"vector": _q(1), "top_k": 5, "filter": {"w": {"$gte": 2.5}}}, name="hn")
    add({"vectors": [_q(2), _q(3)], "top_k": 2, "ef_search": 16}, name="hn")
    add({"vector": _q(0), "top_k": 5, "ef_search": None, "filter": None})
    add({"top_k": 1, "vector": _q(0), "include_metadata": False, "include_values": False})
    add(None, raw='{"vector": [0.5, 1e-3, -2, 3.25, 0, 0, 0, 1], "top_k": 1}')
    add(None, raw='  {"vector":[1,1,1,1,1,1,1,1]}  ')
    # errors the route itself finds
    add(None, raw="{")
    add(None, raw="")
    add(None, raw="[]")
    add(None, raw="null")
    add(None, raw='"x"')
    add(None, raw='{"vector": [NaN, 1, 1, 1, 1, 1, 1, 1]}')
    add(None, raw='{"vector": [Infinity, 1, 1, 1, 1, 1, 1, 1]}')
    add(None, raw='{"vector": [1e400, 1, 1, 1, 1, 1, 1, 1]}')
    add(None, raw='{"vector": [1, 1, 1, 1, 1, 1, 1, 1], "top_k": 5,}')
    add(None, raw=b'{"vector": [1], "x": "\xff"}'.decode("latin-1"))
    add({})
    add({"top_k": 3})
    add({"vector": _q(0), "vectors": [_q(1)]})
    add({"vectors": []})
    add({"vector": None, "vectors": None})
    add({"vector": []})
    add({"vectors": [[]]})
    add({"vectors": [_q(0), _q(1)[:5]]})
    add({"vector": _q(0), "top_k": 0})
    add({"vector": _q(0), "top_k": -1})
    add({"vector": _q(0), "top_k": 1001})
    add({"vector": _q(0), "top_k": "5"})
    add({"vector": _q(0), "top_k": 5.0})
    add({"vector": _q(0), "top_k": True})
    add({"vector": _q(0), "top_k": None})
    add({"vector": _q(0), "include_metadata": "yes"})
    add({"vector": _q(0), "include_values": 1})
    add({"vector": _q(0), "ef_search": 0})
    add({"vector": _q(0), "ef_search": 10001})
    add({"vector": _q(0), "ef_search": "64"})
    add({"vector": _q(0), "filter": "red"})
    add({"vector": _q(0), "filter": [1]})
    add({"vector": _q(0), "filter": {"$bogus": 1}})
    add({"vector": _q(0), "filter": {"color": {"$eq": {"x": 1}}}})
    nested: Any = {"color": "red"}
    for _ in range(10):
        nested = {"$and": [nested]}
    add({"vector": _q(0), "filter": nested})
    add({"vector": _q(0), "foo": 1})
    add({"vector": _q(0), "top_k": 5, "Vector": 1, "zzz": 2})
    add({"vector": ["a", 1, 1, 1, 1, 1, 1, 1]})
    add({"vector": [True, 1, 1, 1, 1, 1, 1, 1]})
    add({"vector": [[1.0] * 8]})
    add({"vector": "1,2,3"})
    add({"vector": {"0": 1.0}})
    add({"vectors": [_q(0), None]})
    add({"vectors": _q(0)})
    add({"vector": [1e39, 1, 1, 1, 1, 1, 1, 1]})
    add({"vector": [-3.5e38, 1, 1, 1, 1, 1, 1, 1]})
    add({"vector": [1.0] * 7})
    add({"vector": [1.0] * 4097})
    add({"vectors": [_q(0)] * 101})
    add({"vectors": [_q(0)] * 100, "top_k": 1})
    add({"vector": _q(0), "top_k": 1000})
    add({"vector": _q(0)}, name="missing")
    add({"vector": _q(0)}, name="Bad!")
    add({"vector": _q(0)}, name="x" * 64)
    add({"vector": _q(0)}, query="?x=1")
    add({"vector": _q(0)}, query="?top_k=3&b=2")
    add({"vector": _q(0)}, ctype="text/plain")
    add({"vector": _q(0)}, ctype=None)
    add({"vector": _q(0)}, ctype="application/vnd.api+json")
    add({"vector": _q(0)}, ctype="application/json; charset=utf-8")
    add({"vector": _q(0)}, key="none")
    add({"vector": _q(0)}, key="bad")
    add({"vector": _q(0)}, key="write")
    add({"vector": "x"}, key="write")
    add({"vector": _q(0)}, method="GET")
    add({"vector": _q(0)}, method="PUT")
    add({"vector": _q(0)}, name="flat/")
    # which check answers first
    add(None, raw="{", key="write")
    add(None, raw="{", key="none")
    add({"vector": _q(0)}, key="write", query="?x=1")
    add({"vector": "x"}, query="?x=1")
    add(None, raw="{", query="?x=1")
    add({"vector": "x"}, name="Bad!")
    add({"vector": _q(0), "top_k": 2000}, name="Bad!")
    add({"vector": _q(0), "top_k": 2000, "filter": nested})
    add({"vectors": [[1.0] * 7] * 101})
    add({"vectors": [[1.0] * 7] * 101, "top_k": 5000})
    add({"vector": [1e39] * 8, "filter": nested})
    add({"vector": _q(0), "filter": {"$and": "x"}})
    add({"vector": _q(0), "filter": {"n": {"$in": list(range(100_001))}}})
    add({"vector": _q(0), "top_k": 3, "filter": {"n": {"$gt": "a"}}})
    add({"vector": _q(0), "top_k": 3, "filter": {"n": {"$gt": 10}}}, name="hn")
    add({"vector": _q(0), "top_k": 3}, name="hn", query="?")
    for i, case in enumerate(out):
        case["request_id"] = f"golden-{i:04d}"
    return out


def replay(stack: Stack, keys: dict[str, str], case: dict[str, Any]) -> dict[str, Any]:
    """Send one case; return what the golden file compares."""
    headers = {"X-Request-Id": case["request_id"]}
    if case["key"] == "bad":
        headers["Authorization"] = "Bearer vp_0123456789abcdef_notakey"
    elif case["key"] != "none":
        headers["Authorization"] = f"Bearer {keys[case['key']]}"
    if case["ctype"] is not None:
        headers["Content-Type"] = case["ctype"]
    url = f"{stack.url}/v1/collections/{case['name']}/query{case['query']}"
    content = case["raw"].encode("latin-1" if "\xff" in case["raw"] else "utf-8")
    with httpx.Client(timeout=30) as http:
        r = http.request(case["method"], url, content=content, headers=headers)
    return {
        "status": r.status_code,
        "content_type": r.headers.get("content-type"),
        "retry_after": r.headers.get("retry-after"),
        "body": r.content.decode("utf-8", "replace"),
    }


def digest(case: dict[str, Any]) -> str:
    """A short fingerprint of a case, so the fixture cannot drift from the case list."""
    return hashlib.sha256(json.dumps(case, sort_keys=True).encode()).hexdigest()[:16]


def record() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp)) as stack:
        keys = setup(stack)
        answers = [
            {"request_id": case["request_id"], "case": digest(case), **replay(stack, keys, case)}
            for case in cases()
        ]
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(answers, indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {len(answers)} cases to {FIXTURE}")


if __name__ == "__main__":
    record()
