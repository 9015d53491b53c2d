"""How fast this machine is right now, so runs of the peers benchmark can be compared.

The machine is shared and virtual: from one day to the next the same code has run
2-3x slower, and not every system slows alike. Two probes, taken when a run starts
and when it ends, put a run's figures in context:

- ``python``: millions of small Python operations per second (function calls, dict
  and attribute reads, the kind of work a Python server does around its index);
- ``round trip``: microseconds for one message to go from one process to another
  and back over a loopback TCP connection, each side waking from ``poll`` (the hop
  a query takes between client, coordinator and worker).

Neither is a figure of any system; they describe the machine.
"""

from __future__ import annotations

import multiprocessing
import select
import socket
import statistics
import time
from dataclasses import dataclass

_WAIT_S = 30.0  # no probe step waits longer than this
_OPS_PER_LOOP = 6  # one call, two dict reads, one attribute read and write, one add


@dataclass
class _Counter:
    total: int = 0


def _step(counter: _Counter, table: dict[str, int], key: str) -> None:
    counter.total += table[key] + table.get("absent", 0)


def python_mops(seconds: float = 0.3) -> float:
    """Best of three: millions of small Python operations per second."""
    table = {"a": 1, "b": 2}
    best = 0.0
    for _ in range(3):
        counter, loops = _Counter(), 0
        started = time.perf_counter()
        deadline = started + seconds / 3
        while time.perf_counter() < deadline:
            for _ in range(1000):
                _step(counter, table, "a")
            loops += 1000
        best = max(best, loops * _OPS_PER_LOOP / (time.perf_counter() - started) / 1e6)
    return best


def _echo(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            if not select.select([sock], [], [], _WAIT_S)[0]:
                return
            data = sock.recv(64)
            if not data:
                return
            sock.sendall(data)


def round_trip_us(count: int = 2000) -> float:
    """Median microseconds for a 32-byte message to reach another process and return."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        child = multiprocessing.get_context("spawn").Process(target=_echo, args=(port,))
        child.start()
        try:
            server.settimeout(_WAIT_S)
            conn, _ = server.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                message, times = b"x" * 32, []
                for _ in range(count):
                    started = time.perf_counter()
                    conn.sendall(message)
                    got = 0
                    while got < len(message):
                        if not select.select([conn], [], [], _WAIT_S)[0]:
                            raise TimeoutError("the echo process did not answer")
                        data = conn.recv(64)
                        if not data:
                            raise ConnectionError("the echo process went away")
                        got += len(data)
                    times.append(time.perf_counter() - started)
        finally:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    return statistics.median(times) * 1e6


def probe() -> dict[str, float]:
    """Both probes, rounded for the report."""
    return {"python_mops": round(python_mops(), 1), "round_trip_us": round(round_trip_us(), 1)}


def one(taken: dict[str, float]) -> str:
    """One probe's figures, as the report prints them."""
    return f"Python {taken['python_mops']:.1f} M ops/s, round trip {taken['round_trip_us']:.0f} µs"


def describe(start: dict[str, float] | None, end: dict[str, float] | None) -> str:
    """One line for the report: the probes at the run's start and end."""
    taken = [f"{label} {one(p)}" for label, p in (("start:", start), ("end:", end)) if p]
    return "; ".join(taken) if taken else "not measured"
