"""Server capacity without the Python client: ``wrk`` posting one fixed request body.

wrk comes from Debian; if it is missing the benchmark installs it with apt-get (as
root), or skips these runs with a message. Headers (the API key among them) go in the
Lua script file, not on the command line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.peers import procstat

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def available() -> bool:
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk: installing the Debian package")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, **quiet)
    if shutil.which("wrk"):
        return True
    print("wrk: not installed and could not be installed (apt-get install wrk); skipping wrk runs")
    return False


def _lua(body: str, headers: dict[str, str]) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n"


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse(output: str) -> dict[str, Any]:
    """Answered requests/s (non-2xx and socket errors left out), p50/p99 (ms) and the
    errors from ``wrk --latency`` output, in all and by kind (``error_kinds``: non-2xx,
    connect, read, write, timeout; the kinds seen only)."""
    out: dict[str, Any] = {"qps": 0.0, "p50_ms": None, "p99_ms": None, "errors": 0, "requests": 0}
    kinds: dict[str, int] = {}
    for line in output.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            out["qps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            out[f"p{words[0][:-1]}_ms"] = _ms(words[1])
        elif "requests in" in line:
            out["requests"] = int(words[0])
        elif line.strip().startswith("Non-2xx"):
            kinds["non-2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0, read 2, write 0, timeout 18"
            for kind, count in zip(words[2::2], words[3::2], strict=False):
                kinds[kind] = int(count.strip(","))
    out["error_kinds"] = {kind: count for kind, count in kinds.items() if count}
    out["errors"] = sum(out["error_kinds"].values())
    # Answers only: refusals (a tier's rate limit, 503s) are quick and would flatter it.
    out["answered"] = max(out["requests"] - out["errors"], 0)
    if out["requests"]:
        out["qps"] *= out["answered"] / out["requests"]
    return out


def run(
    url: str,
    body: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    server: list[int],
) -> dict[str, Any]:
    """One wrk run; server CPU per answered request from /proc."""
    threads = min(connections, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="vp-wrk-") as tmp:
        script = Path(tmp) / "request.lua"
        script.write_text(_lua(body, {"Content-Type": "application/json", **headers}))
        script.chmod(0o600)
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
        before = procstat.cpu_seconds(server)
        done = subprocess.run([*cmd, "-s", str(script), url], capture_output=True, text=True)
        spent = procstat.cpu_seconds(server) - before
    result = parse(done.stdout)
    result["server_cpu_ms_per_q"] = spent / max(result["answered"], 1) * 1000
    if done.returncode != 0:
        result["failed"] = done.stderr.strip()[-200:]
    return result
