"""The async operators in aiostream's pipe form: ``stream.iterate(reader) | pipe.batched(10)``.

Iterate the result inside its context (``async with xs.stream() as it``) as aiostream requires,
or wrap it in :class:`~iii_rx.operators.aio.AsyncStream` for a bare ``async for``.
"""

from __future__ import annotations

from iii_rx.operators.aio import batched_op, cbor_items_op, json_lines_op, rate_limited_op

__all__ = ["batched", "cbor_items", "json_lines", "rate_limited"]

batched = batched_op.pipe
cbor_items = cbor_items_op.pipe
json_lines = json_lines_op.pipe
rate_limited = rate_limited_op.pipe
