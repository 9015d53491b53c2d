"""Memory of a real server holding one HNSW collection, per process, against its data.

    .venv/bin/python -m benchmarks.memory --count 100000 --dim 384 [--workers 2]

Starts ``vectorpanda up`` (two workers, or ``--workers``) in a temporary data dir, upserts ``count``
clustered vectors through the SDK into an HNSW collection (M=16, ef_construction=100,
as the peers benchmark), waits until the server is idle (the graph holds them all),
and reads ``/proc/<pid>/smaps_rollup`` of the coordinator and each worker: RSS, PSS
and anonymous memory. Then it stops the server, starts it again on the same data and
reads them again once a query has loaded the collection from disk (the path a restart,
a recovery after kill -9 or a tenant move takes).

The target (issue 11) is RSS of coordinator + workers <= 2x (raw vectors + graph):
"raw vectors" is count x dim x 4 bytes, "graph" the HNSW links as saved in the index
file (its FAISS part minus the vectors it stores) or, where that file is sealed, their
expected size.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.data import gaussian_mixture
from benchmarks.peers import procstat
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M, settle
from benchmarks.run import _premium_key
from tests.stack import Stack, running_stack

MIB = 2**20
_INDEX_MAGIC = b"VPHNSW1\0"  # workers.hnsw_index: magic, u64 ids length, ids, graph, crc


def _rollup(pid: int) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Anonymous"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def _role(pid: int) -> str:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return b" ".join(cmd[2:4]).decode(errors="replace")


def snapshot(stack: Stack, label: str) -> float:
    """Print RSS/PSS/anonymous MiB of each server process; return the RSS total."""
    assert stack.proc is not None
    total: dict[str, int] = {"Rss": 0, "Pss": 0, "Anonymous": 0}
    print(f"{label}:")
    for pid in procstat.tree(stack.proc.pid):
        with contextlib.suppress(OSError):
            mem, role = _rollup(pid), _role(pid)
            if not mem:
                continue
            for key in total:
                total[key] += mem.get(key, 0)
            print(
                f"  {role:<16} pid {pid:>7}: RSS {mem['Rss'] / MIB:6.1f} MiB, "
                f"PSS {mem['Pss'] / MIB:6.1f}, anonymous {mem['Anonymous'] / MIB:6.1f}"
            )
    print(
        f"  {'total':<28}: RSS {total['Rss'] / MIB:6.1f} MiB, PSS {total['Pss'] / MIB:6.1f}, "
        f"anonymous {total['Anonymous'] / MIB:6.1f}"
    )
    return total["Rss"] / MIB


def graph_bytes(data_dir: Path, count: int, dim: int) -> int | None:
    """The HNSW links in the saved index file (None if it is sealed or not there)."""
    for path in data_dir.rglob("hnsw.index"):
        data = path.read_bytes()
        if not data.startswith(_INDEX_MAGIC):
            return None
        (ids_len,) = struct.unpack_from("<Q", data, len(_INDEX_MAGIC))
        faiss_part = len(data) - len(_INDEX_MAGIC) - 8 - ids_len - 4
        return faiss_part - count * dim * 4
    return None


def expected_graph_bytes(count: int, m: int) -> int:
    """FAISS HNSW links, expected: 2M neighbour slots at level 0 and M per level above,
    with FAISS's level distribution (mL = 1/ln M), 4 bytes each, plus a node's level
    (4 bytes) and offset (8). Within 0.1 % of a built graph's serialized size."""
    ml = 1 / math.log(m)
    probas = []
    for level in range(64):
        p = math.exp(-level / ml) * (1 - math.exp(-1 / ml))
        if p < 1e-9:
            break
        probas.append(p)
    slots, cumulative = 0.0, 0
    for level, p in enumerate(probas):
        cumulative += 2 * m if level == 0 else m
        slots += p * cumulative
    return int(count * (4 * slots / sum(probas) + 4 + 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes (the peers benchmark runs 1)"
    )
    args = parser.parse_args()
    vectors = gaussian_mixture(args.count, args.dim, 200).vectors
    raw = vectors.nbytes / MIB
    from vectorpanda_client import Client

    with tempfile.TemporaryDirectory(prefix="vp-memory-") as tmp:
        data_dir = Path(tmp)
        with running_stack(data_dir, workers=args.workers) as stack:
            assert stack.proc is not None
            server = [stack.proc.pid]
            key = _premium_key(stack)
            settle(server, budget_s=60)
            snapshot(stack, "idle (no collection)")
            with Client(stack.url, key) as client:
                spec = {"m": HNSW_M, "ef_construction": EF_CONSTRUCTION}
                client.create_collection("c", args.dim, metric="l2", index="hnsw", hnsw=spec)
                t0 = time.perf_counter()
                client.collection("c").upsert([str(i) for i in range(args.count)], vectors)
                waited = settle(server, budget_s=1800)
                print(f"upserted and indexed in {time.perf_counter() - t0:.0f} s ({waited:.0f})")
            indexed = snapshot(stack, f"indexed ({args.count:,} x {args.dim})")
        graph = graph_bytes(data_dir, args.count, args.dim)
        with running_stack(data_dir, workers=args.workers) as stack:
            assert stack.proc is not None
            with Client(stack.url, key) as client:
                client.collection("c").query(np.zeros(args.dim, np.float32), top_k=1)
            settle([stack.proc.pid], budget_s=600)
            reloaded = snapshot(stack, "after a restart, the collection loaded from disk")
    if graph is None:  # sealed (encryption at rest, the default)
        graph, how = expected_graph_bytes(args.count, HNSW_M), "expected"
    else:
        how = "from the index file"
    base = raw + graph / MIB
    graph_text = f"{graph / MIB:.1f} MiB ({how})"
    print(
        f"raw vectors {raw:.1f} MiB, graph links {graph_text}: raw + graph {base:.1f} MiB; "
        f"RSS total {indexed:.0f} MiB indexed ({indexed / base:.2f}x), "
        f"{reloaded:.0f} MiB reloaded ({reloaded / base:.2f}x); target <= 2x = {2 * base:.0f} MiB"
    )


if __name__ == "__main__":
    main()
