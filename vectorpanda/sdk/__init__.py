"""Kept for code written against ``vectorpanda.sdk``: the client is now its own package.

The Python client lives in ``clients/python`` (distribution ``vectorpanda-client``, import
``vectorpanda_client``) and installs without the server. This module re-exports its public
names only; new code imports ``vectorpanda_client``. Submodules (``vectorpanda.sdk.errors``
and so on) are not re-exported: import them from ``vectorpanda_client``.
"""

from vectorpanda_client import *  # noqa: F403
from vectorpanda_client import __all__ as __all__
