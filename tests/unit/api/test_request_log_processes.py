"""Several coordinator processes append to one request log: no line is torn."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

from vectorpanda.request_log import request_log_handler

LINES = 3000


def _log_lines(log_dir: str, writer: int) -> None:
    handler = request_log_handler(Path(log_dir))
    logger = logging.getLogger(f"requests-{writer}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    pad = "x" * 300  # batches of many lines: far past one stdio buffer
    for n in range(LINES):
        logger.info(json.dumps({"writer": writer, "n": n, "pad": pad}))
    handler.close()


def test_lines_from_several_processes_never_interleave(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_log_lines, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    lines = (tmp_path / "requests.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # a torn line would not parse
    assert len(rows) == 3 * LINES
    for w in range(3):
        assert [r["n"] for r in rows if r["writer"] == w] == list(range(LINES))
