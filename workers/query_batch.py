"""Micro-batching: concurrent quick queries to one collection answered by one FAISS search.

The worker's session collects the QUERY frames that have already arrived (it never
waits for more: a batch is whatever queued up while the event loop was busy, at most
``VP_WORKER_QUERY_BATCH`` queries per search) and answers them together here, on
the event loop. Queries of one collection with the same ``top_k`` and ``ef_search``
share one graph search (``Collection.query_many``; a small flat collection's are each
scanned alone, as exact arithmetic depends on the batch); everything else stays per
request: the argument checks and their refusals, the deadline and cancel (its own
``WorkBudget``), the cost reported for metering, the rendering of the answer. A
request that is not quick (filtered, a large flat scan, a large HNSW query, or the
collection being written)
gets None and takes the usual way to a thread, alone.

Fair share: the batch visits tenants in turn, one search of at most the batch size
per turn, and each tenant's busy time grows by its share of the batch's time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from workers.collection import Collection
from workers.errors import StoreError
from workers.handlers import _array, _flag, query_options
from workers.protocol import ErrorCode, Frame
from workers.query_answer import rendered_reply
from workers.read_write_lock import WouldBlock
from workers.tenant_store import TenantStore
from workers.work_budget import WorkBudget

# Queries searched with one FAISS call at most (VP_WORKER_QUERY_BATCH; 1: no batching).
DEFAULT_QUERY_BATCH = 32

Result = tuple[dict[str, Any], dict[str, np.ndarray]]


@dataclass(slots=True)
class QuickQuery:
    """One request's part of a batch: its checked arguments and its budget."""

    index: int  # position in the batch the session handed over
    tenant: str
    collection: Collection
    queries: np.ndarray
    top_k: int
    ef_search: int | None
    include_metadata: bool
    include_values: bool
    render: str | None
    binary: bool
    budget: WorkBudget


def parse_quick(store: TenantStore, frame: Frame) -> tuple[Collection, dict[str, Any]]:
    """The arguments of a quick query, checked as handlers.query checks them (same order,
    same refusals); WouldBlock if the query is not quick."""
    header = frame.header
    loaded = store.loaded_collection(header.get("collection", ""))
    if loaded is None or header.get("filter"):
        raise WouldBlock
    top_k = header.get("top_k")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise StoreError(ErrorCode.INVALID, "top_k must be a positive integer")
    if header.get("filter") is not None:
        raise WouldBlock  # {}: handlers.query compiles it (and counts it) in a thread
    ef_search, include_values, render, binary = query_options(header)
    queries = _array(frame, "queries")
    if not loaded.quick_to_search(len(queries), top_k, ef_search):
        raise WouldBlock
    include_metadata = _flag(header, "include_metadata")
    return loaded, {
        "queries": queries,
        "top_k": top_k,
        "ef_search": ef_search,
        "include_metadata": include_metadata,
        "include_values": include_values,
        "render": render,
        "binary": binary,
    }


def run_batches(
    items: list[QuickQuery], limit: int, charge: Any
) -> dict[int, Result | Exception | None]:
    """Search ``items`` grouped by (collection, top_k, ef_search), tenants in turn.

    Returns each item's answer (reply result and arrays), refusal (StoreError, or any
    other exception: an internal error), or None (a thread answers it).
    ``charge(tenant, seconds)`` adds busy time to the tenant's account.
    """
    out: dict[int, Result | Exception | None] = {}
    if len(items) == 1:  # one request (concurrency 1): one search, nothing to group
        _run_charged(items, out, charge)
        return out
    groups: OrderedDict[tuple[int, int, int | None], list[QuickQuery]] = OrderedDict()
    for item in items:
        groups.setdefault((id(item.collection), item.top_k, item.ef_search), []).append(item)
    by_tenant: OrderedDict[str, list[list[QuickQuery]]] = OrderedDict()
    for group in groups.values():
        chunks = by_tenant.setdefault(group[0].tenant, [])
        chunk: list[QuickQuery] = []
        rows = 0
        for item in group:
            if chunk and rows + len(item.queries) > limit:
                chunks.append(chunk)
                chunk, rows = [], 0
            chunk.append(item)
            rows += len(item.queries)
        chunks.append(chunk)
    while by_tenant:  # round robin: one search per tenant per turn
        for tenant in list(by_tenant):
            chunks = by_tenant[tenant]
            chunk = chunks.pop(0)
            if not chunks:
                del by_tenant[tenant]
            _run_charged(chunk, out, charge)
    return out


def _run_charged(
    chunk: list[QuickQuery], out: dict[int, Result | Exception | None], charge: Any
) -> None:
    """``_run_chunk``, its time added to the chunk's tenant (one tenant per chunk)."""
    started = time.perf_counter()
    _run_chunk(chunk, out)
    charge(chunk[0].tenant, time.perf_counter() - started)


def _run_chunk(chunk: list[QuickQuery], out: dict[int, Result | Exception | None]) -> None:
    first = chunk[0]
    try:
        answers = first.collection.query_many(chunk, first.top_k, first.ef_search)
    except WouldBlock:
        for item in chunk:
            out[item.index] = None
        return
    except Exception as exc:  # a defect: each request is answered INTERNAL, not lost
        for item in chunk:
            out[item.index] = exc
        return
    for item, answer in zip(chunk, answers, strict=True):
        if answer is None or isinstance(answer, StoreError):
            out[item.index] = answer
            continue
        results, values = answer
        try:
            if item.render is not None:
                out[item.index] = rendered_reply(results, values, item.render, item.binary)
            else:
                arrays = {"values": values} if values is not None else {}
                out[item.index] = ({"results": results}, arrays)
        except Exception as exc:
            out[item.index] = exc
