"""Large JSON query bodies read in a process of their own, off the coordinator's event loop.

A query whose filter holds tens of thousands of operands is a body of hundreds of
kilobytes: parsing it (``orjson``), checking the filter's bounds and encoding it again
for the worker took about 4 ms of the coordinator's event loop (measured with
``benchmarks.noisy_split``), in C calls that hold the interpreter lock, so every other
client's request waited for it. A body of at least ``BIG_BODY_BYTES`` is handed to
the desk instead: one helper process parses and checks it (api/query_parse.py, the
code the coordinator uses; the helper imports nothing heavier) and sends back the query
with its filter already encoded as JSON, which the frame to the worker carries as it is
(``orjson.Fragment``), its long operand lists split into pieces that the worker decodes
one at a time (coordinator/filter_pieces.py). The event loop only passes bytes along.
The parse's CPU time (``parse_s``) counts towards the client's pacing
(coordinator/admission.py) with the request's round trip: reading such a body is part
of what it costs the service.

Answers are the same byte for byte: a body the lean path cannot prove valid still goes
to the reference route, and a filter past its bounds is refused at the same point,
with the same message (``CheckedFilter``). While the helper starts (a fraction of a
second, once per coordinator process), and if it cannot be used (it died), the body is
parsed here as before.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import random
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, cast

import orjson

from api.query_parse import CheckedFilter, Fallback, FilterTooLarge, parse_json_query, size_filter
from coordinator.filter_pieces import split_filter

if TYPE_CHECKING:
    from api.upsert_rows import Rows
    from coordinator.dataplane import Limits

log = logging.getLogger(__name__)

# Smaller bodies cost less to parse here than to pass to another process and back.
BIG_BODY_BYTES = 64 * 1024
# An upsert body with fewer JSON values than this is parsed by its route, here: about
# 3 ms of the event loop at most. A packed 1,000 x 384 upsert (ids and ``values_b64``,
# as the SDK sends) has about 2,000; as JSON rows, about 386,000, which took 40-80 ms.
# Through the helper, packed SDK uploads lost 13 % of their throughput at concurrency 2.
UPSERT_DESK_VALUES = 16_384
# json_values samples this many windows of this many bytes, at random places.
SAMPLE_WINDOWS, SAMPLE_BYTES = 16, 4096
# What QueryDesk._in_helper answers while the helper starts or is down.
_DOWN = object()


def parse_checked(body: bytes, max_depth: int, max_operands: int) -> dict[str, Any] | None:
    """The query in ``body`` with its filter checked and encoded (a ``CheckedFilter``);
    None when the reference route must answer. Runs in the desk's process."""
    began = time.thread_time()
    try:
        query = parse_json_query(body)
    except Fallback:
        return None
    filter_ = query["filter"]
    if filter_:  # None and {} go as they are: nothing to check, nothing to carry
        error = None
        try:
            size_filter(filter_, max_depth, max_operands)
        except FilterTooLarge as exc:
            error = str(exc)
        if error is None:
            filter_, pieces = split_filter(filter_)
            query["filter"] = CheckedFilter(orjson.dumps(filter_), None, pieces)
        else:
            query["filter"] = CheckedFilter(b"", error)
    query["parse_s"] = time.thread_time() - began
    return query


def json_values(body: bytes) -> int:
    """About how many JSON values ``body`` holds (its commas, counted in a sample).

    The cost of parsing a body grows with its values, not its bytes (a long string is
    cheap). Counting every comma of a 7.6 MB body took 4-5 ms; a sample of 64 KiB at
    random places takes about 0.05 ms, and a client cannot know where it falls: a body
    whose values fill most of it is seen as such. A packed body's ``values_b64`` string
    (no commas, nearly all of its bytes) is left out first: sampled with it, the ids'
    and metadata's commas of a packed 1,000 x 384 upsert, 13 KB of its 2 MB, were
    sometimes seen as 25,000 values (one window in sixteen falling on them).
    """
    start, end = _packed_span(body)
    return _commas(body, 0, start) + _commas(body, end, len(body))


def _packed_span(body: bytes) -> tuple[int, int]:
    """The contents of a ``"values_b64": "..."`` string in ``body`` as (start, end), or
    (0, 0). Skipping any string's contents never hides a value (a comma inside a string
    separates none), and a quote inside a JSON string is escaped, so the key's bytes
    can only be a real string token; base64 has no quotes to end the string early."""
    key = body.find(b'"values_b64"')
    if key < 0:
        return 0, 0
    at = key + len(b'"values_b64"')
    while at < len(body) and body[at] in b" \t\r\n:":
        at += 1
    if at >= len(body) or body[at] != 0x22 or b":" not in body[key:at]:  # 0x22: a quote
        return 0, 0
    close = body.find(b'"', at + 1)
    return (at + 1, close) if close > at else (0, 0)


def _commas(body: bytes, start: int, end: int) -> int:
    """The commas of ``body[start:end]``: counted when short, else estimated from
    SAMPLE_WINDOWS windows at random places."""
    size = end - start
    if size <= SAMPLE_WINDOWS * SAMPLE_BYTES:
        return body.count(b",", start, end)
    seen = 0
    for _ in range(SAMPLE_WINDOWS):
        at = start + random.randrange(size - SAMPLE_BYTES)  # nosec B311: a sample, not a secret
        seen += body.count(b",", at, at + SAMPLE_BYTES)
    return seen * size // (SAMPLE_WINDOWS * SAMPLE_BYTES)


def _parsed_here(body: bytes) -> dict[str, Any]:
    began = time.thread_time()
    query = parse_json_query(body)
    query["parse_s"] = time.thread_time() - began
    return query


def _ready() -> bool:
    return True


class QueryDesk:
    """One helper process (started at the first large body) that parses large bodies."""

    def __init__(self, limits: Limits, big_body_bytes: int = BIG_BODY_BYTES) -> None:
        self.limits = limits
        self.big_body_bytes = big_body_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._started: Future[bool] | None = None  # done once the helper has started

    async def parse(self, body: bytes) -> dict[str, Any]:
        """The query in a JSON ``body`` (parse_json_query's answer; Fallback likewise)."""
        if len(body) < self.big_body_bytes:
            return parse_json_query(body)
        limits = self.limits
        query = await self._in_helper(
            "parsing here", parse_checked, body, limits.max_filter_depth, limits.max_filter_operands
        )
        if query is _DOWN:
            return _parsed_here(body)
        if query is None:
            raise Fallback
        return cast("dict[str, Any]", query)

    async def parse_upsert(self, body: bytes) -> Rows:
        """The rows of a large JSON upsert ``body``, parsed and checked by the helper as the
        route would (api/upsert_rows.py); Fallback when the route must answer: a body the
        route refuses, one cheap to parse (small, or packed: ``values_b64``), or any while
        the helper starts or is down (the route then parses it on the event loop)."""
        if len(body) < self.big_body_bytes or json_values(body) < UPSERT_DESK_VALUES:
            raise Fallback
        from api.upsert_rows import parse_upsert  # pydantic: the helper loads it only here

        limits = self.limits
        parsed = await self._in_helper(
            "the upsert route parses the body",
            parse_upsert,
            body,
            limits.max_upsert_vectors,
            limits.max_dimension,
            limits.max_metadata_bytes,
        )
        if parsed is _DOWN or parsed is None:
            raise Fallback
        return cast("Rows", parsed)

    async def _in_helper(self, instead: str, fn: Callable[..., object], *args: object) -> object:
        """``fn(*args)`` in the helper process; _DOWN while the helper starts, or when it
        is down (then stopped, and logged with what happens ``instead``)."""
        try:
            pool = self._pool_started()
            if not self._up():
                return _DOWN
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            # RuntimeError: the pool was shut down (the process is stopping)
            log.warning("query desk unavailable, %s: %s", instead, exc)
            self.close()
            return _DOWN

    def _pool_started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork would copy the coordinator's threads' locks in any state
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(1, mp_context=context)
            self._started = self._pool.submit(_ready)
        return self._pool

    def _up(self) -> bool:
        """Whether the helper has started (False while it starts; raises if it failed)."""
        started = self._started
        if started is None or not started.done():
            return False
        return started.result()

    def close(self) -> None:
        """Stop the helper process (if started); a later large body starts a new one."""
        pool, self._pool, self._started = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
