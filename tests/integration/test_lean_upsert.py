"""Large JSON upserts, parsed in the coordinator's helper process (api/lean_upsert.py), are
answered as the reference route answers them, errors included, and store the same rows.

``Content-Type: application/json; charset=utf-8`` is not the lean path's exact type, so
the same body sent with it is answered by the route (api/routes/vectors.py). A packed
body (``values_b64``, as the SDK sends) has few values and is parsed by the route either
way (api/query_desk.py, ``UPSERT_DESK_VALUES``); it is here to show both stay alike.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.stack import Stack

pytestmark = pytest.mark.integration

DIM = 64
RNG = np.random.default_rng(17)
MATRIX = RNG.standard_normal((500, DIM)).astype(np.float32)  # rows: values enough for the desk
LEAN, ROUTE = "application/json", "application/json; charset=utf-8"


def _post(stack: Stack, key: str, path: str, body: bytes, ctype: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": ctype}
    url = f"{stack.url}/v1/collections" + (f"/{path}" if path else "")
    return httpx.post(url, content=body, headers=headers, timeout=60)


def _rows(matrix: np.ndarray = MATRIX, prefix: str = "v") -> dict[str, Any]:
    return {
        "vectors": [
            {"id": f"{prefix}{i}", "values": row.tolist(), "metadata": {"n": i, "t": f"x{i % 4}"}}
            for i, row in enumerate(matrix)
        ]
    }


def _packed(matrix: np.ndarray = MATRIX) -> dict[str, Any]:
    ids = [f"p{i}" for i in range(len(matrix))]
    values = base64.b64encode(matrix.astype("<f4").tobytes()).decode()
    return {"ids": ids, "values_b64": values, "metadata": [{"n": i} for i in range(len(ids))]}


@pytest.fixture(scope="module")
def keys(stack: Stack) -> tuple[str, str]:
    """A client's key, with two collections alike ("lean", "route"), and its write-only key."""
    with stack.admin() as admin:
        body = {"name": "lean-up", "email": "lean-up@example.com", "tier": "premium"}
        client_id = admin.post("/admin/v1/clients", json=body).json()["client_id"]
        key, write_only = (
            admin.post(f"/admin/v1/clients/{client_id}/keys", json={"scopes": scopes}).json()[
                "api_key"
            ]
            for scopes in (["read", "write", "manage"], ["write"])
        )
    for name in ("lean", "route"):
        spec = orjson.dumps({"name": name, "dimension": DIM, "metric": "l2"})
        assert _post(stack, key, "", spec, LEAN).status_code == 201
    # The first large body starts the desk's helper (the route parses it meanwhile).
    _post(stack, key, "lean/upsert", orjson.dumps(_rows(MATRIX[:200], "warm")), LEAN)
    time.sleep(1.0)
    return key, write_only


def _fetch(stack: Stack, key: str, name: str, ids: list[str]) -> Any:
    body = orjson.dumps({"ids": ids})
    return _post(stack, key, f"{name}/fetch", body, LEAN).json()


@pytest.mark.parametrize("form", [_rows, _packed], ids=["rows", "packed"])
def test_a_large_upsert_stores_what_the_route_stores(
    stack: Stack, keys: tuple[str, str], form: Any
) -> None:
    key, write_only = keys
    body = orjson.dumps(form())
    assert len(body) > 64 * 1024
    lean = _post(stack, write_only, "lean/upsert", body, LEAN)
    route = _post(stack, write_only, "route/upsert", body, ROUTE)
    assert lean.status_code == route.status_code == 200
    assert lean.content == route.content == orjson.dumps({"upserted": len(MATRIX)})
    assert lean.headers["content-type"] == route.headers["content-type"]
    assert lean.headers["x-request-id"] != route.headers["x-request-id"]
    ids = [f"{'v' if form is _rows else 'p'}{i}" for i in (0, 7, 299)]
    assert _fetch(stack, key, "lean", ids) == _fetch(stack, key, "route", ids)
    fetched = _fetch(stack, key, "lean", ids)["vectors"]
    assert fetched[ids[1]]["values"] == pytest.approx(MATRIX[7].tolist())


def _refused() -> dict[str, bytes]:
    ragged = _rows()
    ragged["vectors"][9]["values"].pop()
    repeated = _rows()
    repeated["vectors"][1]["id"] = "v0"
    strict = _rows()
    strict["vectors"][3]["values"][0] = "0.5"
    too_many = _rows(np.zeros((1001, 8), np.float32))
    packed = _packed()
    packed["values_b64"] = packed["values_b64"][:-8] + "!!!!!!!!"
    return {
        "ragged rows": orjson.dumps(ragged),
        "a repeated id": orjson.dumps(repeated),
        "a string for a float": orjson.dumps(strict),
        "too many vectors": orjson.dumps(too_many),
        "bad base64": orjson.dumps(packed),
        "not JSON": orjson.dumps(_rows())[:-3],
    }


@pytest.mark.parametrize("body", _refused().values(), ids=_refused().keys())
def test_a_large_body_the_route_refuses_gets_the_routes_error(
    stack: Stack, keys: tuple[str, str], body: bytes
) -> None:
    key, _ = keys
    assert len(body) > 64 * 1024
    lean = _post(stack, key, "lean/upsert", body, LEAN)
    route = _post(stack, key, "route/upsert", body, ROUTE)
    assert lean.status_code == route.status_code
    assert lean.status_code in (400, 413, 422)
    assert lean.json()["error"]["code"] == route.json()["error"]["code"]
    assert lean.json()["error"]["message"] == route.json()["error"]["message"]


def test_errors_after_the_parse_are_the_routes(stack: Stack, keys: tuple[str, str]) -> None:
    key, _ = keys
    body = orjson.dumps(_rows())
    for path in ("missing/upsert", "no%20such/upsert"):
        lean = _post(stack, key, path, body, LEAN)
        route = _post(stack, key, path, body, ROUTE)
        assert lean.status_code == route.status_code == 404
        assert lean.json()["error"]["message"] == route.json()["error"]["message"]
    wide = orjson.dumps(_rows(RNG.standard_normal((300, DIM + 1)).astype(np.float32)))
    lean = _post(stack, key, "lean/upsert", wide, LEAN)
    route = _post(stack, key, "lean/upsert", wide, ROUTE)  # refused: nothing is stored
    assert lean.status_code == route.status_code
    assert lean.status_code >= 400
    assert lean.json()["error"]["message"] == route.json()["error"]["message"]


def test_a_read_only_key_is_refused_as_by_the_route(stack: Stack, keys: tuple[str, str]) -> None:
    read_only = stack.new_client("lean-up-r", scopes=("read",), tier="premium")
    body = orjson.dumps(_rows())
    for ctype in (LEAN, ROUTE):
        r = _post(stack, read_only, "lean/upsert", body, ctype)
        assert r.status_code == 403, r.text
