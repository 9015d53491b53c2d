"""``python -m vectorpanda``: the same as the ``vectorpanda`` command."""

import sys

from vectorpanda.cli import main

sys.exit(main())
