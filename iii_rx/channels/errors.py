"""Errors of channel readers and writers (defined in :mod:`iii_rx.errors`, the one tree)."""

from __future__ import annotations

from iii_rx.errors import CborDecodeError, ChannelClosedError, ChannelError, TruncatedStreamError

__all__ = ["ChannelClosedError", "ChannelError", "CborDecodeError", "TruncatedStreamError"]
