"""FAISS, loaded on first use: a worker that holds no collection never maps it.

Importing FAISS costs a worker about 15 MiB of RSS (its libraries, OpenBLAS and
OpenMP), so a worker that only answers control requests, or whose tenants live
elsewhere, should not pay it.

Request threads run FAISS on one OpenMP thread each. OpenMP's thread count belongs to
each thread; a thread that never set its own reads the default that OpenMP takes from
``OMP_NUM_THREADS`` when it loads. So the load here makes that default 1 (graph
building sets its own count explicitly), and a request thread started once FAISS is
loaded sets its own (``one_openmp_thread``).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

_lock = threading.Lock()
_module: Any = None


def faiss() -> Any:
    """The ``faiss`` module, imported on the first call."""
    module = _module
    return module if module is not None else _load()


def loaded() -> bool:
    """Whether FAISS has been imported into this process (by anyone)."""
    return _module is not None or "faiss" in sys.modules


def one_openmp_thread() -> None:
    """This thread runs FAISS on one OpenMP thread (a thread pool's initializer)."""
    with _lock:
        module = _module if _module is not None else sys.modules.get("faiss")
        if module is not None:
            module.omp_set_num_threads(1)
        # else: OpenMP is not loaded yet, and _load makes its default one thread


def _load() -> Any:
    global _module
    with _lock:
        if _module is None:
            saved = os.environ.get("OMP_NUM_THREADS")
            if saved == "1":  # as `vectorpanda up`, fleet and the image start workers
                import faiss as module
            else:
                # Read once, when OpenMP loads; put back so child processes see the
                # environment they were given.
                os.environ["OMP_NUM_THREADS"] = "1"
                try:
                    import faiss as module
                finally:
                    if saved is None:
                        del os.environ["OMP_NUM_THREADS"]
                    else:
                        os.environ["OMP_NUM_THREADS"] = saved
            _module = module
        return _module
