"""Fixtures of the SDK's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.unit.sdk.test_transport import Reply, Server


@pytest.fixture
def serve() -> Iterator[Callable[[Reply], Server]]:
    """Starts loopback HTTP servers answering ``reply(request)``; closed afterwards."""
    servers: list[Server] = []

    def start(reply: Reply) -> Server:
        servers.append(Server(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
