"""Errors of channel readers and writers (defined in :mod:`iii_rx.errors`, the one tree)."""

from __future__ import annotations

from iii_rx.errors import (
    CborDecodeError,
    ChannelClosedError,
    ChannelCloseUnconfirmedError,
    ChannelError,
    TruncatedStreamError,
)

__all__ = [
    "CborDecodeError",
    "ChannelCloseUnconfirmedError",
    "ChannelClosedError",
    "ChannelError",
    "TruncatedStreamError",
]
