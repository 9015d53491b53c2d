"""The binary query format the SDK sends (the server's side: api/binary_query.py).

``b"VPQ1" | u32 LE length of P | P (JSON options + "shape") | float32 LE values``: the
query vectors travel as raw float32, so neither side writes or parses them as text.
The answer is the usual JSON. Documented in docs/api.md ("Changes in this version").
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

CONTENT_TYPE = "application/x-vectorpanda"
MAGIC = b"VPQ1"
_LEN = struct.Struct("<I")


def encode_query(matrix: np.ndarray, single: bool, options: dict[str, Any]) -> bytes:
    """The body of a query of ``matrix`` (n, d); ``single`` sends one vector of shape [d]."""
    values = np.ascontiguousarray(matrix, dtype="<f4")
    shape = [values.shape[1]] if single else [values.shape[0], values.shape[1]]
    head = orjson.dumps({**options, "shape": shape})
    return b"".join((MAGIC, _LEN.pack(len(head)), head, values.tobytes()))
