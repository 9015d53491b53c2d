"""Binary upserts, and large JSON ones, answered from the admission gate.

``POST /v1/collections/{name}/upsert`` with a JSON body of at least the query desk's
``big_body_bytes`` (64 KiB) and a key with the write scope: api/lean_front.py reads the
body and hands it to the query desk's helper process (api/query_desk.py), which runs
the route's own parse and checks on it (api/upsert_rows.py) and sends back the ids,
the float32 matrix and the metadata. A 1,000 x 384 upsert as JSON is about 7.6 MB;
parsed on the coordinator's event loop, it held that loop (and every other client's
request) for 40-80 ms.

The route in api/routes/vectors.py stays the reference and the OpenAPI description:
a body the helper refuses, a smaller body, and any large body while the helper
starts, go to it unchanged (the body replayed), so every error is the route's own.
What follows the parse is the route's own last step (``store_rows``): the collection
name, the tier's vector limit, ``DataPlane.upsert``, and the answer ``{"upserted": n}``.

A binary upsert (``Content-Type: application/x-vectorpanda``, api/binary_upsert.py) is
parsed here, on the event loop: its vectors are used where they lie in the body, so
that costs well under a millisecond. The route cannot read that format, so every
answer to one, errors included, is made here.
"""

from __future__ import annotations

from api.binary_upsert import parse_binary_upsert
from api.lean_query import LeanRoute
from api.routes.vectors import api_error, store_rows
from api.upsert_rows import Rows, RowsRefused
from coordinator.accounts.model import Principal

UPSERT_SUFFIX = "/upsert"


class LeanUpsert(LeanRoute):
    """The upsert route's binary bodies, and its large JSON bodies once the desk has
    parsed and checked them."""

    suffix = UPSERT_SUFFIX

    def parse_binary(self, body: bytes) -> Rows:
        """The rows of a binary upsert; the API's error raised for one it refuses
        (BinaryQueryError for a malformed frame)."""
        limits = self.dataplane.limits
        try:
            return parse_binary_upsert(
                body, limits.max_upsert_vectors, limits.max_dimension, limits.max_metadata_bytes
            )
        except RowsRefused as refused:
            raise api_error(refused) from None

    async def answer(self, principal: Principal, name: str, rows: Rows) -> bytes:
        """The answer's bytes, or the API's error raised (the route's own last step)."""
        return await store_rows(self.dataplane, principal, name, rows)
