"""The README's walkthrough, run as written against a fresh ``vectorpanda up``.

Blocks marked ``<!-- readme-test: shell -->`` run in bash (``set -euo
pipefail``; ``curl -f`` fails on an HTTP error), then the
``<!-- readme-test: python -->`` blocks run with the key the shell block made.
Only the URL is changed, to the test server's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import running_stack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```\w+\n(.*?)\n```", re.S)
README_URL = "http://127.0.0.1:8080"


def blocks(kind: str) -> list[str]:
    found = [body for k, body in BLOCK.findall((REPO / "README.md").read_text()) if k == kind]
    assert found, f"README.md has no readme-test: {kind} block"
    return found


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    shell = "\n".join(blocks("shell"))
    python = "\n".join(blocks("python"))
    assert README_URL in shell
    workdir = tmp_path / "repo"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VP_")}
    env["PYTHONPATH"] = str(REPO)  # the checkout's code, whichever venv runs it
    with running_stack(tmp_path / "vp-data") as stack:
        env["VP_DATA_DIR"] = str(stack.data_dir)
        script = (
            "set -euo pipefail\n"
            + shell.replace(README_URL, stack.url)
            + '\necho "README_TEST_KEY=$VP_API_KEY"\n'
        )
        ran = subprocess.run(
            ["bash", "-c", script],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}"
        out = ran.stdout
        assert '"matches"' in out and '"id":"a"' in out.replace(" ", "")
        assert "client.created" in out and "api_key.issued" in out
        key = re.search(r"^README_TEST_KEY=(vp_\S+)$", out, re.M)
        assert key, out
        py = subprocess.run(
            [sys.executable, "-c", python],
            cwd=workdir,
            capture_output=True,
            text=True,
            env={**env, "VP_URL": stack.url, "VP_API_KEY": key.group(1)},
            timeout=300,
        )
        assert py.returncode == 0, py.stderr
        assert "[(" in py.stdout  # the printed hits
