"""Chroma: its server and client from Chroma's own venv (~/.cache/vectorpanda-bench/
chroma-venv, built from requirements/bench-chroma.txt on first use, so Chroma's many
dependencies never touch the project's venv); measured by ``chroma_driver`` there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import venv
from pathlib import Path

import numpy as np

from benchmarks.data import Dataset
from benchmarks.peers.dataset import CACHE
from benchmarks.peers.measure import Figures

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "bench-chroma.txt"
VENV = CACHE / "chroma-venv"


def ensure_venv() -> Path:
    """Chroma's venv, (re)installed from its lock when the lock's packages changed."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    pins = "\n".join(line for line in LOCK.read_text().splitlines() if not line.startswith("#"))
    wanted = hashlib.sha256(pins.encode()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"chroma: installing {LOCK.name} into {VENV}")
        if not python.exists():
            venv.create(VENV, with_pip=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # --no-deps: the lock already holds the whole closure. Resolving Chroma's own
        # requirements again let pip 23 take a newer release for one with extras
        # ("uvicorn[standard]>=...", uvicorn 0.55 beside the locked 0.54) and refuse it
        # in hash-checking mode, once the package index had that release.
        subprocess.run([*pip, "--no-deps", "--require-hashes", "-r", str(LOCK)], check=True)
        stamp.write_text(wanted)
    return python


def run(data: Dataset, wrk_seconds: float | None) -> Figures:
    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="vp-peers-chroma-") as tmp:
        np.savez(f"{tmp}/data.npz", vectors=data.vectors, queries=data.queries, truth=data.truth)
        driver = [str(python), "-m", "benchmarks.peers.chroma_driver", "--data",
                  f"{tmp}/data.npz", "--out", f"{tmp}/out.json",
                  "--wrk-seconds", str(wrk_seconds or 0)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run(driver, check=True, cwd=REPO, env=env)
        raw = json.loads(Path(tmp, "out.json").read_text())
    return Figures.from_plain(raw)
