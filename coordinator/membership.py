"""The coordinator group's membership in PostgreSQL, for members on different hosts.

On one host the members of a group share files under ``<data>/run``: the rate-limit
table, the coherence board and the leader's address (docs/process-model.md). Those
cannot span hosts, so with the control plane on PostgreSQL every member keeps a row in
``coordinator_members`` instead (migration 0004), written by a heartbeat:

- ``applied_seq``: the last seq of the event log this member has applied to its key
  cache (coherence.LogFollower posts it). A revocation, pause, resume, deletion or tier
  change returns once every member seen within ``LIVE_S`` has applied it, waiting at
  most ``coherence.WAIT_S`` (the same contract as the one-host board);
- ``internal_url`` and ``is_leader``: the leader (whoever holds the advisory lock)
  publishes the address of its internal placement API; followers look it up here;
- ``domain``: the processes that share one rate-limit table (one host's run directory).
  A client's rate and burst are split evenly over the live domains
  (``SplitRateLimiter``): each enforces its share, exactly within itself.

Times are the database server's clock, so the members' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, text

from coordinator.rate_limit import Decision, RateLimiter

log = logging.getLogger("vectorpanda.membership")

# A member whose heartbeat is older than this is gone: nobody waits on it, and it no
# longer counts in the rate split.
LIVE_S = 2.0
HEARTBEAT_S = 0.25
WAIT_POLL_S = 0.02
# Rows of members gone this long are deleted (by whichever member beats next).
FORGET_S = 300.0

_BEAT = text(
    "INSERT INTO coordinator_members (member_id, domain, applied_seq, last_seen) "
    "VALUES (:me, :domain, :seq, clock_timestamp()) "
    "ON CONFLICT (member_id) DO UPDATE SET last_seen = clock_timestamp(), "
    "applied_seq = GREATEST(coordinator_members.applied_seq, EXCLUDED.applied_seq)"
)
_LIVE = text(
    "SELECT member_id, domain, internal_url, is_leader FROM coordinator_members "
    "WHERE last_seen > clock_timestamp() - make_interval(secs => :live)"
)
_BEHIND = text(
    "SELECT member_id FROM coordinator_members WHERE member_id <> :me AND applied_seq < :seq "
    "AND last_seen > clock_timestamp() - make_interval(secs => :live)"
)
_FORGET = text(
    "DELETE FROM coordinator_members "
    "WHERE last_seen < clock_timestamp() - make_interval(secs => :gone)"
)


class GroupMembership:
    """This member's row, its heartbeat, and what it reads of the others' rows."""

    def __init__(
        self, engine: Engine, host: str, domain: str, label: str = "", live_s: float = LIVE_S
    ) -> None:
        """``host``: the kernel's boot id (or the host's name); ``domain``: what identifies
        the processes sharing one rate-limit table (this host's run directory); ``label``:
        a readable name for this member's id (its host name and data directory, say)."""
        self._engine = engine
        self.host = host
        self.domain = domain
        self.member_id = f"{label or domain}#{uuid.uuid4().hex[:12]}"
        self._live_s = live_s
        self._applied = 0
        self._written = -1
        self._changed = asyncio.Event()
        self._leader_url: str | None = None
        self._domains = 1
        self.beats = 0

    # --- the heartbeat -------------------------------------------------------------

    def beat(self) -> None:
        """Write this member's heartbeat and applied seq; read the live members."""
        seq = self._applied
        with self._engine.begin() as conn:
            conn.execute(_BEAT, {"me": self.member_id, "domain": self.domain, "seq": seq})
            rows = conn.execute(_LIVE, {"live": self._live_s}).all()
            if self.beats % 200 == 0:
                conn.execute(_FORGET, {"gone": FORGET_S})
        self._written = seq
        self.beats += 1
        self._domains = max(1, len({row.domain for row in rows}))
        leaders = [row.internal_url for row in rows if row.is_leader and row.internal_url]
        self._leader_url = leaders[0] if len(leaders) == 1 else None

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every ``HEARTBEAT_S``, and at once when the applied seq moves."""
        failing = False
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.beat)
                if failing:
                    log.warning("the coordinator group heartbeat works again")
                failing = False
            except Exception:  # a database hiccup: the next beat tries again
                if not failing:  # once per outage, not four times a second
                    log.exception("the coordinator group heartbeat failed")
                failing = True
            self._changed.clear()
            if self._applied != self._written:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), HEARTBEAT_S)

    def leave(self) -> None:
        """Delete this member's row (a clean stop): nobody waits on it from now on."""
        with self._engine.begin() as conn:
            conn.execute(
                text("DELETE FROM coordinator_members WHERE member_id = :me"),
                {"me": self.member_id},
            )

    # --- the leader's address ------------------------------------------------------

    def publish_leader(self, url: str) -> None:
        """This member leads (it holds the advisory lock): followers find ``url`` here."""
        with self._engine.begin() as conn:
            conn.execute(_BEAT, {"me": self.member_id, "domain": self.domain, "seq": 0})
            conn.execute(
                text(
                    "UPDATE coordinator_members SET is_leader = (member_id = :me), "
                    "internal_url = CASE WHEN member_id = :me THEN :url ELSE internal_url END"
                ),
                {"me": self.member_id, "url": url},
            )
        self._leader_url = url

    def leader_url(self) -> str | None:
        """The live leader's internal address, as of the last heartbeat."""
        return self._leader_url

    # --- the rate split ------------------------------------------------------------

    def domains(self) -> int:
        """How many rate-limit domains are live (at least 1: this one)."""
        return self._domains

    # --- read-your-writes (the interface of coherence.CoherenceBoard) --------------

    def post(self, index: int, seq: int) -> None:
        """This member has applied the log up to ``seq`` (the next beat says so)."""
        if seq > self._applied:
            self._applied = seq
            self._changed.set()

    def behind(self, index: int, seq: int) -> list[str]:
        """Live members other than this one that have not applied ``seq`` yet."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                _BEHIND, {"me": self.member_id, "seq": seq, "live": self._live_s}
            ).all()
        return [str(row.member_id) for row in rows]

    async def wait_applied(self, index: int, seq: int, timeout_s: float | None = None) -> bool:
        """Wait until every live member has applied ``seq``; False if one is still behind
        after ``timeout_s`` (default ``coherence.WAIT_S``)."""
        from coordinator.coherence import WAIT_S

        loop = asyncio.get_running_loop()
        deadline = loop.time() + (WAIT_S if timeout_s is None else timeout_s)
        while True:
            try:
                late = await asyncio.to_thread(self.behind, index, seq)
            except Exception:
                log.exception("reading the coordinator group's applied seqs failed")
                return False
            if not late:
                return True
            if loop.time() >= deadline:
                log.warning("coordinator group members %s lag behind seq %d", late, seq)
                return False
            await asyncio.sleep(WAIT_POLL_S)


class SplitRateLimiter(RateLimiter):
    """A client's rate and burst split evenly over ``share()`` rate-limit domains.

    Each domain (one host's processes, sharing their exact buckets) enforces its share,
    so the whole group lets a client through at most its rate when its requests spread
    evenly; a client whose requests all land on one domain gets that domain's share.
    """

    def __init__(self, inner: RateLimiter, share: Callable[[], int]) -> None:
        super().__init__()
        self._inner = inner
        self._share = share

    def acquire(self, client_id: str, rate: float, burst: float, cost: float = 1.0) -> Decision:
        n = self._share()
        if n > 1 and rate > 0:
            # never below one request's cost, or a small burst would admit nothing
            rate, burst = rate / n, max(burst / n, min(burst, cost))
        return self._inner.acquire(client_id, rate, burst, cost)

    def charge(self, client_id: str, tokens: float) -> None:
        self._inner.charge(client_id, tokens)
