"""What the sync and async clients share: configuration and the plan runner's rules."""

from __future__ import annotations

import os
import random
from typing import Any

import httpx

from vectorpanda_client._version import __version__
from vectorpanda_client.errors import ConnectionFailed
from vectorpanda_client.exchange import Answer, Call, Operation, Plan, with_retries
from vectorpanda_client.retry import RetryPolicy

DEFAULT_TIMEOUT_S = 30.0
# Errors raised before any byte of the request can have reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ClientConfig:
    """URL, credentials and policies of one client, and how calls become HTTP."""

    def __init__(self, url: str, api_key: str, retry: RetryPolicy | None, seed: int | None) -> None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key is required (a 'vp_...' key issued by the operators)")
        self.url = url.rstrip("/")
        self.headers = {
            "Authorization": f"Bearer {api_key.strip()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"vectorpanda-python/{__version__}",
        }
        self.retry = retry or RetryPolicy()
        self.rng = random.Random(seed)

    def plan(self, op: Operation[Any]) -> Plan[Any]:
        return with_retries(op, self.retry, self.rng)

    @staticmethod
    def request_args(call: Call) -> dict[str, Any]:
        args: dict[str, Any] = {"method": call.method, "url": call.path, "content": call.content()}
        if call.content_type is not None or call.accept is not None:
            headers = {}
            if call.content_type is not None:
                headers["Content-Type"] = call.content_type
            if call.accept is not None:
                headers["Accept"] = call.accept
            args["headers"] = headers
        return args

    @staticmethod
    def answer(response: httpx.Response) -> Answer:
        return Answer(response.status_code, response.headers, response.content)

    def failure(self, exc: httpx.TransportError) -> ConnectionFailed:
        sent = not isinstance(exc, NOT_SENT)
        return ConnectionFailed(
            f"cannot reach {self.url}: {type(exc).__name__}: {exc}",
            sent=sent,
            refused=_refused(exc),
        )


def _refused(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def tls_verify(verify: str | bool | None) -> str | bool:
    """The ``verify`` argument, else ``VP_CA_BUNDLE`` (a CA file), else the system's trust."""
    if verify is not None:
        return verify
    return os.environ.get("VP_CA_BUNDLE", "").strip() or True
