"""The client is its own package; the server's old import paths re-export it."""

from __future__ import annotations

import importlib.metadata

import vectorpanda
import vectorpanda.sdk
import vectorpanda_client
from vectorpanda_client import _version
from vectorpanda_client.base import ClientConfig


def test_vectorpanda_sdk_re_exports_the_client_s_public_names() -> None:
    assert vectorpanda.sdk.__all__ == vectorpanda_client.__all__
    for name in vectorpanda_client.__all__:
        assert getattr(vectorpanda.sdk, name) is getattr(vectorpanda_client, name)
    assert vectorpanda.Client is vectorpanda_client.Client
    assert vectorpanda.AsyncClient is vectorpanda_client.AsyncClient
    assert vectorpanda.VectorPandaError is vectorpanda_client.VectorPandaError


def test_the_old_submodule_paths_are_the_client_s_modules() -> None:
    import vectorpanda.sdk.async_client as old_async
    from vectorpanda.sdk.binary import CONTENT_TYPE

    assert old_async is vectorpanda_client.async_client  # monkeypatching one patches both
    assert CONTENT_TYPE is vectorpanda_client.binary.CONTENT_TYPE


def test_the_user_agent_carries_the_client_s_own_version() -> None:
    config = ClientConfig("http://127.0.0.1:1", "vp_0000000000000000_" + "x" * 32, None, None)
    version = _version.__version__
    assert config.headers["User-Agent"] == f"vectorpanda-python/{version}"
    assert importlib.metadata.version("vectorpanda-client") == version  # pyproject reads it
