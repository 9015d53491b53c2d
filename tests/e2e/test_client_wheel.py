"""The client's wheel, installed alone into an empty venv, runs a query against ``vectorpanda up``.

The wheel is built from a copy of ``clients/python`` with the venv's own setuptools (no build
isolation, so nothing is fetched). The empty venv has no system site-packages and no pip;
the outer pip installs into it the client's dependencies only, pinned and hashed, taken
from ``requirements/runtime.txt`` (the lock the Makefile installs from, through the same
pip configuration), then the wheel. The script runs there in isolated mode from a directory
outside the repo, so nothing of the server can be imported by accident.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.stack import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "clients" / "python"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
SERVER_ONLY = {"fastapi", "faiss-cpu", "sqlalchemy", "uvicorn", "aio-pika", "pydantic"}

LISTING = (
    "import importlib.metadata as m, json;"
    "print(json.dumps(sorted(d.metadata['Name'] for d in m.distributions())))"
)
SCRIPT = r"""
import importlib.util, json, sys
import numpy as np
import vectorpanda_client

url, key, out = sys.argv[1], sys.argv[2], {}
out["file"] = vectorpanda_client.__file__
out["server_importable"] = {
    name: importlib.util.find_spec(name) is not None
    for name in ("vectorpanda", "api", "coordinator", "fastapi", "faiss", "sqlalchemy")
}
rng = np.random.default_rng(5)
data = rng.standard_normal((50, 8)).astype(np.float32)
with vectorpanda_client.Client(url, key) as client:
    client.create_collection("wheel", 8, metric="l2")
    docs = client.collection("wheel")
    out["upserted"] = docs.upsert([f"w{i}" for i in range(50)], data, [{"i": i} for i in range(50)])
    result = docs.query(data[17], top_k=3, include_metadata=True)
    out["ids"] = result.ids
    out["first_metadata"] = result[0].metadata
    try:
        client.collection("missing").query(data[0], top_k=1)
    except vectorpanda_client.NotFoundError as e:
        out["missing"] = e.code
print(json.dumps(out))
"""


def client_dependency_closure() -> set[str]:
    """The client's declared dependencies and theirs (markers for this Python, no extras)."""
    declared = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in declared["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in importlib.metadata.requires(name) or []]
    return seen


def lock_entries(names: set[str]) -> str:
    """The pinned, hashed entries of ``names`` in the runtime lock (one block each)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", RUNTIME_LOCK.read_text())
    chosen = {}
    for block in blocks:
        head = re.match(r"([A-Za-z0-9_.\-]+)==", block)
        if head and canonicalize_name(head.group(1)) in names:
            chosen[canonicalize_name(head.group(1))] = block.strip()
    assert set(chosen) == names, f"not in {RUNTIME_LOCK.name}: {names - set(chosen)}"
    return "\n".join(chosen.values()) + "\n"


def run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_client_wheel_in_an_empty_venv_queries_a_real_server(stack: Stack, tmp_path: Path) -> None:
    # built from a copy: setuptools' build/ directory in the checkout could carry stale files
    source = tmp_path / "source"
    shutil.copytree(
        CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(wheels), str(source)],
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = wheels.glob("vectorpanda_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n for n in archive.namelist() if n.endswith(".py")}
    package = CLIENT_DIR / "vectorpanda_client"
    assert shipped == {f"vectorpanda_client/{p.name}" for p in package.glob("*.py")}

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    assert json.loads(run([str(python), "-I", "-c", LISTING], cwd=tmp_path)) == []

    needed = client_dependency_closure()
    assert {"httpx", "numpy"} <= needed and not needed & SERVER_ONLY
    lock = tmp_path / "client-lock.txt"
    lock.write_text(lock_entries(needed))
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    run([*pip, "--require-hashes", "--no-deps", "-r", str(lock)], cwd=tmp_path)
    run([*pip, "--no-deps", str(wheel)], cwd=tmp_path)
    installed = json.loads(run([str(python), "-I", "-c", LISTING], cwd=tmp_path))
    assert {canonicalize_name(n) for n in installed} == needed | {"vectorpanda-client"}

    key = stack.new_client("wheel")
    out = json.loads(run([str(python), "-I", "-c", SCRIPT, stack.url, key], cwd=tmp_path))
    assert Path(out["file"]).is_relative_to(venv)
    assert not any(out["server_importable"].values()), out["server_importable"]
    assert out["upserted"] == 50
    rng = np.random.default_rng(5)
    data = rng.standard_normal((50, 8)).astype(np.float32)
    nearest = np.argsort(((data - data[17]) ** 2).sum(axis=1), kind="stable")[:3]
    assert out["ids"] == [f"w{i}" for i in nearest]
    assert out["first_metadata"] == {"i": 17}
    assert out["missing"] == "not_found"
