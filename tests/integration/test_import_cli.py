"""``vectorpanda import`` and ``vectorpanda query`` against a real ``vectorpanda up``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vectorpanda
from tests.stack import Stack

pytestmark = pytest.mark.integration

DIM = 8


def new_client(stack: Stack, name: str, tier: str = "premium") -> str:
    """A client of ``tier`` (set at creation) and an API key for it."""
    with stack.admin() as admin:
        r = admin.post(
            "/admin/v1/clients", json={"name": name, "email": f"{name}@example.com", "tier": tier}
        )
        r.raise_for_status()
        cid = r.json()["client_id"]
        r = admin.post(
            f"/admin/v1/clients/{cid}/keys", json={"scopes": ["read", "write", "manage"]}
        )
        r.raise_for_status()
        return str(r.json()["api_key"])


def vp(stack: Stack, key: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VP_API_KEY", "VP_URL")}
    env["VP_URL"] = stack.url
    if key is not None:
        env["VP_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "vectorpanda", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_npy_import_of_100k_rows_shows_progress_and_counts(stack: Stack, tmp_path: Path) -> None:
    key = new_client(stack, "importer")
    data = np.random.default_rng(3).standard_normal((100_000, DIM)).astype(np.float32)
    path = tmp_path / "vectors.npy"
    np.save(path, data)
    with vectorpanda.Client(stack.url, key) as client:
        client.create_collection("big", DIM, "l2")
        run = vp(stack, key, "import", str(path), "--collection", "big")
        assert run.returncode == 0, run.stderr + run.stdout
        # progress (plain lines when not on a terminal) and the closing count
        assert "progress: 50,000/100,000 rows (50%)" in run.stderr
        assert "progress: 100,000/100,000 rows (100%)" in run.stderr
        assert "100,000 vectors imported into 'big'" in run.stdout
        assert client.collection("big").describe().vector_count == 100_000
        got = client.collection("big").fetch(["0", "54321", "99999"])
        for i in (0, 54321, 99999):
            assert np.array_equal(got[str(i)].values, data[i])
    summary = json.loads((tmp_path / "vectors.npy.vp-import.json").read_text())
    assert summary["imported"] == 100_000 and summary["finished"] is True
    assert summary["skipped"] == 0 and summary["failed"] == 0


def test_npy_with_ids_file_skips_bad_rows_and_resumes(stack: Stack, tmp_path: Path) -> None:
    key = new_client(stack, "resumer")
    data = np.random.default_rng(4).standard_normal((2500, DIM)).astype(np.float32)
    data[7, 3] = np.nan
    np.save(tmp_path / "v.npy", data)
    (tmp_path / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(2500)))
    args = ["import", str(tmp_path / "v.npy"), "--collection", "r", "--ids"]
    args += [str(tmp_path / "ids.txt"), "--create", "cosine", "--batch-size", "500"]
    run = vp(stack, key, *args)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "2,499 vectors imported" in run.stdout and "1 rows skipped" in run.stdout
    assert "skipped row 7: values are not all finite" in run.stdout
    # As if the first run had been interrupted after 1,000 rows: --resume does only the rest.
    cp_path = tmp_path / "v.npy.vp-import.json"
    cp = json.loads(cp_path.read_text())
    cp.update(next_row=1000, imported=999, skipped=1, finished=False)
    cp_path.write_text(json.dumps(cp))
    run = vp(stack, key, *args, "--resume")
    assert run.returncode == 0, run.stderr + run.stdout
    assert "2,499 vectors imported" in run.stdout and "rows done 2,500/2,500" in run.stdout
    assert "1,500/s" not in run.stdout  # the count is cumulative, the rate is this run's
    with vectorpanda.Client(stack.url, key) as client:
        assert client.collection("r").describe().vector_count == 2499
        assert set(client.collection("r").fetch(["doc-7", "doc-8"])) == {"doc-8"}


def test_jsonl_import_with_metadata_and_bad_lines(stack: Stack, tmp_path: Path) -> None:
    key = new_client(stack, "jsonl")
    rng = np.random.default_rng(5)
    lines = []
    for i in range(300):
        row = {"id": f"j{i}", "values": rng.standard_normal(DIM).tolist()}
        if i % 2:
            row["metadata"] = {"odd": True, "n": i}
        lines.append(orjson.dumps(row).decode())
    lines[10] = "{not json"
    lines[20] = orjson.dumps({"id": "short", "values": [1.0, 2.0]}).decode()
    (tmp_path / "v.jsonl").write_text("\n".join(lines) + "\n")
    run = vp(stack, key, "import", str(tmp_path / "v.jsonl"), "--collection", "j", "--create", "l2")
    assert run.returncode == 0, run.stderr + run.stdout
    assert "298 vectors imported" in run.stdout and "2 rows skipped" in run.stdout
    assert "expected 8" in run.stdout
    with vectorpanda.Client(stack.url, key) as client:
        got = client.collection("j").fetch(["j3", "j4"])
        assert got["j3"].metadata == {"odd": True, "n": 3} and got["j4"].metadata == {}
        # vectorpanda query by id: the vector itself comes first
        out = vp(stack, key, "query", "--collection", "j", "--id", "j3", "--top-k", "3", "--json")
        assert out.returncode == 0, out.stderr
        assert orjson.loads(out.stdout)["matches"][0]["id"] == "j3"
        vec = json.dumps(got["j4"].values.tolist())
        out = vp(stack, key, "query", "--collection", "j", "--vector", vec, "--metadata")
        assert out.returncode == 0 and "j4" in out.stdout


def test_parquet_import_with_struct_and_json_metadata(stack: Stack, tmp_path: Path) -> None:
    key = new_client(stack, "parquet")
    rng = np.random.default_rng(6)
    n = 1200
    values = rng.standard_normal((n, DIM)).astype(np.float32)
    table = pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "values": pa.array(values.tolist(), type=pa.list_(pa.float32())),
            "metadata": [orjson.dumps({"group": f"g{i % 3}"}).decode() for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=500)
    structs = table.set_column(2, "metadata", pa.array([{"group": f"s{i % 2}"} for i in range(n)]))
    pq.write_table(structs, tmp_path / "s.parquet")
    for name in ("v", "s"):
        run = vp(
            stack, key, "import", str(tmp_path / f"{name}.parquet"), "--collection", name,
            "--create", "cosine", "--batch-size", "400",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr + run.stdout
        assert "1,200 vectors imported" in run.stdout
    with vectorpanda.Client(stack.url, key) as client:
        got = client.collection("v").fetch(["p4"])["p4"]
        assert got.metadata == {"group": "g1"}
        assert np.array_equal(got.values, values[4])
        assert client.collection("s").fetch(["p5"])["p5"].metadata == {"group": "s1"}


def test_key_only_from_the_environment(stack: Stack, tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((3, DIM), dtype=np.float32))
    run = vp(stack, None, "import", str(tmp_path / "v.npy"), "--collection", "x")
    assert run.returncode == 2
    assert "VP_API_KEY is not set" in run.stderr and "never from command-line" in run.stderr
    # there is no option to pass a key
    run = vp(
        stack, "vp_x", "import", str(tmp_path / "v.npy"), "--collection", "x", "--api-key", "k"
    )
    assert run.returncode == 2 and "unrecognized arguments" in run.stderr
    run = vp(stack, None, "query", "--collection", "x", "--id", "a")
    assert run.returncode == 2 and "VP_API_KEY" in run.stderr


def test_missing_collection_and_bad_key_are_clear(stack: Stack, tmp_path: Path) -> None:
    key = new_client(stack, "nocol")
    np.save(tmp_path / "v.npy", np.zeros((3, DIM), dtype=np.float32))
    run = vp(stack, key, "import", str(tmp_path / "v.npy"), "--collection", "nope")
    assert run.returncode == 2 and "does not exist" in run.stderr and "--create" in run.stderr
    run = vp(stack, "vp_0123456789abcdef_" + "x" * 43, "import", str(tmp_path / "v.npy"),
             "--collection", "nope")  # fmt: skip
    assert run.returncode == 1 and "unauthorized" in run.stderr
