"""Pipeable operators for iii_rx streams, and their async-iterator counterparts.

Rx operators (``source.pipe(batch(max_items=100))``): :func:`batch`, :func:`retry_backoff`,
:func:`timeout`, :func:`decode_cbor`, :func:`decode_json_lines`, :func:`rate_limit`.

Async iterators over channel readers, which keep backpressure: :func:`batched`,
:func:`retrying`, :func:`cbor_items`, :func:`json_lines`, :func:`rate_limited`; the same in
aiostream's pipe form in :mod:`iii_rx.operators.pipe`.
"""

from __future__ import annotations

from iii_rx.operators.aio import (
    AsyncStream,
    batched,
    cbor_items,
    json_lines,
    rate_limited,
    retrying,
)
from iii_rx.operators.batch import batch
from iii_rx.operators.decode import (
    JsonLinesDecodeError,
    JsonLinesDecoder,
    decode_cbor,
    decode_json_lines,
)
from iii_rx.operators.rate import rate_limit
from iii_rx.operators.retry import is_retryable, retry_backoff
from iii_rx.operators.timeout import timeout

__all__ = [
    "AsyncStream",
    "JsonLinesDecodeError",
    "JsonLinesDecoder",
    "batch",
    "batched",
    "cbor_items",
    "decode_cbor",
    "decode_json_lines",
    "is_retryable",
    "json_lines",
    "rate_limit",
    "rate_limited",
    "retry_backoff",
    "retrying",
    "timeout",
]
