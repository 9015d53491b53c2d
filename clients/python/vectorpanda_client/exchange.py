"""The SDK without I/O: requests to make, answers received, waits between retries.

Every client operation is a generator that yields ``Call``s and is sent back
``Answer``s; ``with_retries`` wraps one so that it also yields ``Sleep``s. The
sync and async clients only differ in how they carry out those two steps.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import orjson

from vectorpanda_client.errors import VectorPandaError, error_from_response
from vectorpanda_client.retry import RetryPolicy

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make. ``body`` is JSON-able (numpy arrays included), or bytes
    sent as they are with ``content_type``."""

    method: str
    path: str
    body: Any = None
    # Safe to repeat after an exchange broke off mid-way (the server may have acted).
    idempotent: bool = True
    content_type: str | None = None  # None: application/json
    accept: str | None = None  # None: application/json

    def content(self) -> bytes | None:
        if self.body is None or isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body, option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP response as received."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""

    def json(self) -> Any:
        return orjson.loads(self.content) if self.content else None

    def header(self, name: str) -> str:
        """A response header's value ('' if absent), whatever the mapping's key case."""
        value = self.headers.get(name)
        if value is None:
            value = next((v for k, v in self.headers.items() if k.lower() == name), "")
        return str(value)


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this long before the next step."""

    seconds: float


# What an operation yields, what it is sent, and what it returns.
Operation = Generator[Call, Answer, T]
# What a driver carries out: requests and waits; it sends back answers or failures.
Step = Call | Sleep
Outcome = Answer | VectorPandaError | None
Plan = Generator[Step, Outcome, T]


def failed(outcome: Outcome) -> VectorPandaError:
    """The error a failed outcome stands for."""
    if isinstance(outcome, Answer):
        return error_from_response(outcome.status, outcome.headers, outcome.content)
    assert isinstance(outcome, VectorPandaError)
    return outcome


def retry_delay(
    op: Operation[Any],
    call: Call,
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    rng: random.Random,
) -> float | None:
    """None when ``outcome`` answered ``call``; else the wait before trying it again,
    or, when ``policy`` allows no retry, ``op`` closed and the outcome's error raised."""
    if isinstance(outcome, Answer) and outcome.status < 400:
        return None
    error = failed(outcome)
    delay = policy.delay(attempt, error, call.idempotent, rng)
    if delay is None:
        op.close()
        raise error
    return delay


def with_retries(op: Operation[T], policy: RetryPolicy, rng: random.Random) -> Plan[T]:
    """Run ``op``, retrying each failed call as ``policy`` allows; raise the last error.

    (The blocking client drives the same rules without this generator layer:
    ``sync_client.Client._run``.)
    """
    try:
        call = next(op)
    except StopIteration as done:
        return done.value
    while True:
        attempt = 0
        while True:
            outcome = yield call
            delay = retry_delay(op, call, outcome, attempt, policy, rng)
            if delay is None:
                break
            yield Sleep(delay)
            attempt += 1
        try:
            call = op.send(cast(Answer, outcome))  # retry_delay said it answered
        except StopIteration as done:
            return done.value
