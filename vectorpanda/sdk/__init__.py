"""Kept for code written against ``vectorpanda.sdk``: the client is now its own package.

The Python client lives in ``clients/python`` (distribution ``vectorpanda-client``, import
``vectorpanda_client``) and installs without the server. This module re-exports its public
names, and its submodules under the old names (``vectorpanda.sdk.errors`` is
``vectorpanda_client.errors``, the same module object). New code imports
``vectorpanda_client``.
"""

import importlib
import pkgutil
import sys

import vectorpanda_client
from vectorpanda_client import *  # noqa: F403
from vectorpanda_client import __all__ as __all__

for _sub in pkgutil.iter_modules(vectorpanda_client.__path__):
    sys.modules[f"{__name__}.{_sub.name}"] = importlib.import_module(
        f"vectorpanda_client.{_sub.name}"
    )
